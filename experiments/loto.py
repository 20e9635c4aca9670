r"""Leave-one-task-out (LOTO) evaluation binary.

  python -m experiments.loto --benchmark=nasbench_graph --workdir=/tmp/loto
  python -m experiments.loto --data_dir=DIR --workdir=/tmp/loto [--tasks=a,b]

For each held-out task: fit the value-network ensemble on the other tasks, let every method pick
an architecture for the held-out task, and score the picks (`tarch.evaluate`). Writes into the
workdir:

  config.json          the config used
  meta_dataset/        the converted benchmark (with --benchmark)
  folds/<task>.json    one finished fold each, written atomically; a rerun with the same config
                       and data reuses them, so a killed run resumes where it stopped
  loto_results.csv     one row per held-out task x method
  loto_summary.json    {"methods": {method: {mean_normalized_regret, mean_percentile, num_tasks}}}
  loto_regret.png      mean normalised regret per method, with each task's value
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
import pandas as pd
from absl import app, flags, logging
from ml_collections import config_flags

import tarch
from experiments.configs.loto import library_configs
from tarch import atomic, evaluate, meta_train
from tarch import runs as runs_lib
from tarch.adapters import nasbench_graph

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "configs", "loto.py"),
    "LOTO config file (append :tiny for the smoke-test variant).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results; reruns resume here.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "A meta-dataset directory (see README).")
_BENCHMARK = flags.DEFINE_string("benchmark", None, "A built-in benchmark: nasbench_graph.")
_TASKS = flags.DEFINE_list("tasks", None, "Hold out only these tasks (default: every task).")

# Built-in benchmarks: name -> function writing its meta-dataset directory.
BENCHMARKS = {"nasbench_graph": nasbench_graph.convert}
# Bump when what a fold computes changes, so that older fold files are recomputed, not reused.
_FOLD_FORMAT = 3


def prepare_data_dir(workdir: str, data_dir: str | None, benchmark: str | None) -> str:
  """The meta-dataset directory to use: `data_dir`, or the converted `benchmark` in workdir."""
  if (data_dir is None) == (benchmark is None):
    raise ValueError("give exactly one of --data_dir and --benchmark")
  if data_dir is not None:
    return data_dir
  if benchmark not in BENCHMARKS:
    raise ValueError(f"unknown benchmark {benchmark!r}; valid: {sorted(BENCHMARKS)}")
  out = os.path.join(workdir, "meta_dataset")
  if not os.path.isdir(out):
    # Converted into a temporary directory that is renamed into place once complete, so a
    # killed conversion never leaves a half-written meta-dataset behind.
    logging.info("converting benchmark %s into %s", benchmark, out)
    tmp = tempfile.mkdtemp(prefix=".meta_dataset.", dir=workdir)
    BENCHMARKS[benchmark](tmp)
    os.replace(tmp, out)
  return out


def _fingerprint(config: ml_collections.ConfigDict, ds: runs_lib.MetaDataset) -> str:
  """Identifies what a fold result depends on: the config and the data."""
  h = hashlib.sha256(config.to_json(sort_keys=True).encode())
  h.update(f"tarch {tarch.__version__} fold format {_FOLD_FORMAT}".encode())
  h.update(json.dumps(ds.space.to_dict(), sort_keys=True).encode())
  h.update("\n".join(ds.arch_keys).encode())
  for array in (ds.features_TxF, ds.enc_AxE, ds.task_R, ds.arch_R, ds.score_R, ds.test_score_R):
    h.update(np.ascontiguousarray(array).tobytes())
  h.update("\n".join(ds.task_names).encode())
  return h.hexdigest()[:16]


def _fold_path(workdir: str, task_name: str) -> str:
  safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in task_name)
  digest = hashlib.sha1(task_name.encode()).hexdigest()[:8]  # keeps distinct names distinct
  return os.path.join(workdir, "folds", f"{safe}-{digest}.json")


def _load_fold(path: str, fingerprint: str) -> dict | None:
  """A finished fold to reuse, or None if absent, unreadable or from another config or data."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      fold = json.load(f)
    reusable = fold["fingerprint"] == fingerprint and isinstance(fold["rows"], list)
  except (OSError, ValueError, KeyError, TypeError) as e:
    logging.warning("fold file %s is unreadable (%s); rerunning the fold", path, e)
    return None
  if not reusable:
    logging.info("fold %s was run with another config, data or code version; rerunning", path)
    return None
  return fold


def run_fold(config: ml_collections.ConfigDict, ds: runs_lib.MetaDataset, task: int) -> dict:
  """Fits the ensemble without `task` and evaluates every method on it."""
  net_config, train_config, infer_config = library_configs(config)
  train_tasks = [t for t in range(ds.num_tasks) if t != task]
  t0 = time.perf_counter()
  model, history = meta_train.fit(ds, net_config, train_config, train_tasks=train_tasks)
  t1 = time.perf_counter()
  key = jax.random.fold_in(jax.random.key(config.seed), task)
  rows = evaluate.evaluate_fold(ds, task, model, infer_config, key)
  t2 = time.perf_counter()
  return {"task": ds.task_names[task], "rows": rows, "train_seconds": t1 - t0,
          "eval_seconds": t2 - t1, "train_steps": history[-1]["step"],
          "best_val_loss": history[-1]["best_val_loss"],
          "task_effect_scale": model.task_effect_scale,
          "interaction_scale": model.interaction_scale, "ranker": model.ranker,
          # JSON has no infinity: the widest bandwidth (equal weights) is written "inf".
          "kernel_bandwidth": (None if model.kernel is None else
                               float(model.kernel.bandwidth)
                               if np.isfinite(model.kernel.bandwidth) else "inf")}


def summarize(results: pd.DataFrame) -> dict:
  """`loto_summary.json` content: per-method means over held-out tasks."""
  methods = {}
  for method in evaluate.METHODS:
    sub = results[results["method"] == method]
    if len(sub):
      methods[method] = {
          "mean_normalized_regret": float(sub["normalized_regret"].mean()),
          "mean_percentile": float(sub["percentile"].mean()),
          "num_tasks": len(sub),
      }
  return {"methods": methods}


def format_table(results: pd.DataFrame) -> str:
  """Methods x metrics (means over tasks, and median trials-to-match), best regret first."""
  table = results.groupby("method", sort=False).agg(
      normalized_regret=("normalized_regret", "mean"),
      percentile=("percentile", "mean"),
      median_trials_to_match=("trials_to_match", "median"),
      tasks=("task", "nunique"))
  return table.sort_values("normalized_regret").to_string(float_format=lambda x: f"{x:.3f}")


def plot(results: pd.DataFrame, path: str) -> None:
  """Bar chart of mean normalised regret per method, each task's regret as a dot."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  order = (results.groupby("method")["normalized_regret"].mean().sort_values().index.tolist())
  fig, ax = plt.subplots(figsize=(8, 4))
  means = [results.loc[results.method == m, "normalized_regret"].mean() for m in order]
  ax.bar(range(len(order)), means, color=["C1" if m.startswith("tarch") else "C0" for m in order])
  for i, m in enumerate(order):
    y = results.loc[results.method == m, "normalized_regret"].to_numpy()
    ax.scatter(np.full(len(y), i) + np.linspace(-0.2, 0.2, len(y)), y, s=8, color="k", zorder=3)
  ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
  ax.set_ylabel("normalised regret (lower is better)")
  ax.axhline(1.0, color="gray", lw=0.8, ls="--")
  ax.set_title(f"Leave-one-task-out over {results.task.nunique()} tasks")
  fig.tight_layout()
  tmp = f"{path}.tmp{os.getpid()}.png"
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)


def run(config: ml_collections.ConfigDict, workdir: str, data_dir: str | None = None,
        benchmark: str | None = None, tasks: Sequence[str] | None = None) -> dict:
  """Runs (or resumes) the LOTO evaluation; returns the summary dict."""
  os.makedirs(os.path.join(workdir, "folds"), exist_ok=True)
  ds = runs_lib.load_meta_dataset(prepare_data_dir(workdir, data_dir, benchmark))
  if ds.num_tasks < 2:
    raise ValueError(f"{ds.source}: leave-one-task-out needs at least 2 tasks, got "
                     f"{ds.num_tasks}")
  if tasks:
    unknown = sorted(set(tasks) - set(ds.task_names))
    if unknown:
      raise ValueError(f"--tasks names unknown tasks {unknown}; known: {list(ds.task_names)}")
    held_out = ds.task_indices(tasks)
  else:
    held_out = list(range(ds.num_tasks))
  atomic.atomic_write_text(os.path.join(workdir, "config.json"),
                           config.to_json_best_effort(indent=2))
  fingerprint = _fingerprint(config, ds)

  folds = []
  start = time.perf_counter()
  for i, task in enumerate(held_out):
    path = _fold_path(workdir, ds.task_names[task])
    fold = _load_fold(path, fingerprint)
    if fold is None:
      fold = run_fold(config, ds, task)
      fold["fingerprint"] = fingerprint
      atomic.atomic_write_text(path, json.dumps(fold, indent=1))
      status = f"trained {fold['train_steps']} steps in {fold['train_seconds']:.1f}s"
    else:
      status = "reused"
    regret = {r["method"]: r["normalized_regret"] for r in fold["rows"]}
    elapsed = time.perf_counter() - start
    print(f"[{i + 1}/{len(held_out)}] {ds.task_names[task]}: {status}; regret tarch "
          f"{regret['tarch']:.3f}, best_on_average {regret['best_on_average']:.3f} "
          f"({elapsed:.0f}s elapsed)", flush=True)
    folds.append(fold)

  results = pd.DataFrame([row for fold in folds for row in fold["rows"]])
  columns = ["task", "method", "architecture", "test_score", "normalized_regret", "percentile",
             "trials_to_match", "predicted"]
  results = results[columns]
  atomic.atomic_write(os.path.join(workdir, "loto_results.csv"),
                      lambda tmp: results.to_csv(tmp, index=False))
  summary = summarize(results)
  atomic.atomic_write_json(os.path.join(workdir, "loto_summary.json"), summary)
  plot(results, os.path.join(workdir, "loto_regret.png"))
  print(format_table(results))
  print(f"wrote {workdir}/loto_results.csv, loto_summary.json, loto_regret.png")
  return summary


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  run(_CONFIG.value, _WORKDIR.value, data_dir=_DATA_DIR.value, benchmark=_BENCHMARK.value,
      tasks=_TASKS.value)


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  app.run(main)
