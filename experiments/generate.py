r"""Offline phase: train many architectures on many related tasks and keep every result.

  python -m experiments.generate --config=experiments/configs/offline.py --workdir=DIR
  python -m experiments.generate --config=experiments/configs/offline.py:small --workdir=DIR

Builds the tasks (`config.tasks`) and the plan of the run (`tarch.generation.Plan`: the
architectures of the MLP family (`tarch.child`), sampled once, and every (task, architecture,
seed) triple, in batches trained by one vmapped program each, the model axis split over every
device of a `tarch.mesh.data_mesh`). Writes into the workdir:

  generate/plan.json            the plan's fingerprint (`Plan.fingerprint`: its settings, the
                                tasks' data and tarch's source code) and the config; a rerun
                                that would compute other results (another config, other data,
                                changed code) refuses to mix them into this workdir
  generate/batches/NNNNN.parquet  one finished batch each, written atomically; a rerun (after a
                                kill, say) trains only the batches that are missing
  meta_dataset/                 space.json, runs.parquet, tasks.csv (see README), written once
                                every batch is done, then validated by loading it back

Runs table columns: `task`, one column per choice, `seed`, `score` (validation accuracy),
`test_score`, `cost` (training FLOPs: what training the model costs), `params` (parameter
count), `flops_per_example` (one example's forward pass), `train_loss`, `status` ("ok" or
"failed"), `failure` (why). A model whose training loss or parameters became non-finite is a
failed run: its scores are those of predicting the task's majority training class (what a model
that learned nothing gets), never NaN, and `failure` names the step.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np
import pandas as pd
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.configs.offline import child_config
from tarch import atomic, generation
from tarch import mesh as mesh_lib
from tarch import runs as runs_lib
from tarch import tasks as tasks_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """--config and --workdir; also experiments.demo's. Defined only by the binaries' entry points,
  so that the modules import side by side (tests) without clashing flag names."""
  config_flags.DEFINE_config_file(
      "config", os.path.join(os.path.dirname(__file__), "configs", "offline.py"),
      "Offline config file (append :small for the seconds-long variant).")
  flags.DEFINE_string("workdir", None, "Directory for results; reruns resume here.")
  flags.mark_flag_as_required("workdir")

def build_tasks(config: ml_collections.ConfigDict) -> list[tasks_lib.Task]:
  """The tasks of `config.tasks`."""
  spec = config.tasks
  if spec.source == "offline":
    return tasks_lib.offline_tasks(spec.num_tasks, config.seed, tuple(spec.offline_sources))
  if spec.source == "tfds":
    return tasks_lib.tfds_tasks(list(spec.tfds_datasets), spec.num_tasks, config.seed,
                                spec.tfds_max_examples, spec.tfds_pool,
                                spec.tfds_data_dir or None)
  raise ValueError(f"config.tasks.source must be 'offline' or 'tfds', got {spec.source!r}")


def make_plan(config: ml_collections.ConfigDict,
              tasks: list[tasks_lib.Task]) -> generation.Plan:
  """The library's plan of every (task, architecture, seed) triple of `config`."""
  return generation.Plan(child_config(config), tasks, num_architectures=config.num_architectures,
                         num_seeds=config.num_seeds, batch_models=config.batch_models,
                         seed=config.seed)


def _batch_path(workdir: str, index: int) -> str:
  return os.path.join(workdir, "generate", "batches", f"{index:05d}.parquet")


def _load_batch(path: str, members: np.ndarray) -> pd.DataFrame | None:
  """A finished batch to reuse, or None if absent, unreadable or not this batch's models."""
  if not os.path.exists(path):
    return None
  try:
    frame = pd.read_parquet(path)
  except Exception as e:  # noqa: BLE001 - any unreadable file is recomputed, not fatal.
    logging.warning("batch file %s is unreadable (%s); training the batch again", path, e)
    return None
  if "model" not in frame or not np.array_equal(frame["model"].to_numpy(), members):
    logging.warning("batch file %s holds other models; training the batch again", path)
    return None
  return frame


def _check_plan(workdir: str, fingerprint: str, config: ml_collections.ConfigDict) -> None:
  path = os.path.join(workdir, "generate", "plan.json")
  if os.path.exists(path):
    with open(path) as f:
      found = json.load(f).get("fingerprint")
    if found != fingerprint:
      raise ValueError(
          f"{workdir} holds a generation run with another config, data or tarch source "
          f"(plan {found}, now {fingerprint}); use a new --workdir, or delete "
          f"{os.path.join(workdir, 'generate')} to start over")
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  text = json.dumps({"fingerprint": fingerprint,
                     "config": json.loads(config.to_json_best_effort())}, indent=2)
  atomic.atomic_write_text(path, text)


def run(config: ml_collections.ConfigDict, workdir: str,
        progress: Callable[[str], None] = print) -> str:
  """Runs (or resumes) the offline phase; returns the meta-dataset directory."""
  out = os.path.join(workdir, "meta_dataset")
  start = time.perf_counter()
  tasks = build_tasks(config)
  plan = make_plan(config, tasks)
  fingerprint = plan.fingerprint()
  _check_plan(workdir, fingerprint, config)
  if os.path.exists(os.path.join(out, "runs.parquet")):
    progress(f"{out} is complete; nothing to train")
    return out
  os.makedirs(os.path.join(workdir, "generate", "batches"), exist_ok=True)
  mesh = mesh_lib.data_mesh()
  devices = mesh_lib.num_shards(mesh)
  if config.batch_models % devices:
    logging.warning("config.batch_models=%d is not a multiple of the %d devices: a full batch is "
                    "padded to %d models (the padding's results are dropped); choose a multiple "
                    "to waste nothing", config.batch_models, devices,
                    mesh_lib.padded_size(config.batch_models, mesh))
  data = plan.task_data(mesh)
  frames, todo = {}, []
  for i, (_, members) in enumerate(plan.batches):
    frame = _load_batch(_batch_path(workdir, i), members)
    if frame is None:
      todo.append(i)
    else:
      frames[i] = frame
  done = sum(len(f) for f in frames.values())
  progress(f"{len(tasks)} tasks x {len(plan.archs)} architectures x {config.num_seeds} seed(s) "
           f"= {plan.num_models} models in {len(plan.batches)} batches on {devices} "
           f"{jax.default_backend()} device(s); {done} already done")
  trained, train_start = 0, time.perf_counter()
  cost_left, cost_done = sum(plan.batch_cost(i) for i in todo), 0.0
  for i in todo:
    frame = plan.train_batch(data, i, mesh)
    atomic.atomic_write(_batch_path(workdir, i), functools.partial(frame.to_parquet, index=False))
    frames[i] = frame
    trained += len(frame)
    done += len(frame)
    elapsed = time.perf_counter() - train_start
    cost_done += plan.batch_cost(i)
    rate, eta = trained / elapsed, (cost_left - cost_done) * elapsed / cost_done
    progress(f"[{done}/{plan.num_models} models] batch {i + 1}/{len(plan.batches)} "
             f"(width {plan.batches[i][0]}): {rate:.1f} models/s, ETA {eta:.0f}s, "
             f"{int((frame['status'] == 'failed').sum())} failed")

  runs_df = pd.concat([frames[i] for i in range(len(plan.batches))], ignore_index=True)
  runs_df = runs_df.sort_values("model", kind="stable").drop(columns="model")
  runs_df = runs_df.reset_index(drop=True)
  tasks_df = tasks_lib.metafeature_frame(plan.padded)
  # Written into a temporary directory renamed into place once complete.
  tmp = tempfile.mkdtemp(prefix=".meta_dataset.", dir=workdir)
  runs_lib.write_meta_dataset(tmp, plan.space, runs_df, tasks_df)
  runs_lib.load_meta_dataset(tmp)  # what users will load must load
  shutil.rmtree(out, ignore_errors=True)
  os.replace(tmp, out)
  failed = int((runs_df["status"] == "failed").sum())
  progress(f"wrote {out}: {len(runs_df)} runs ({failed} failed), {len(tasks)} tasks, "
           f"{time.perf_counter() - start:.0f}s")
  return out


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  run(FLAGS.config, FLAGS.workdir, progress=lambda line: print(line, flush=True))


if __name__ == "__main__":
  define_flags()
  app.run(main)
