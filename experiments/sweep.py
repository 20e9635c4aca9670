r"""Sweep binary: held-out tasks x seeds x hyperparameter values, one vmapped batch axis.

  python -m experiments.sweep --benchmark=nasbench_graph --workdir=/tmp/sweep \
      --config.sweep.seeds=0,1,2 --config.sweep.learning_rate=1e-3,3e-3
  python -m experiments.sweep --data_dir=DIR --workdir=/tmp/sweep [--tasks=a,b] [--multihost]

Every simulation is one leave-one-task-out fold (`tarch.simulate`); `tarch.sweep` runs them in
chunks, each one compiled program `jax.vmap`ped over the chunk and sharded over a mesh of every
device, writes each finished chunk atomically to `WORKDIR/simulations/`, and resumes from there.
The swept values are listed in `experiments/configs/sweep.py`. Writes into the workdir:

  config.json          the config used
  simulations/         finished chunks (reused by a rerun with the same data and code)
  sweep_results.csv    one row per simulation x method: swept values, seed, task, method,
                       architecture, test_score, normalized_regret, percentile, ...
  sweep_summary.json   {"configs": [{"config": {...}, "methods": {method:
                        {"mean_normalized_regret", "se", "num_simulations"}}}]}; se is the
                       standard error over held-out tasks of the seed-averaged regret
  sweep_regret.png     mean regret (+- se) of each method for each configuration

With --multihost, `jax.distributed.initialize()` connects the processes: with
--coordinator_address, --num_processes and --process_id where they are given, else JAX's
environment and cluster auto-detection (SLURM, Open MPI, Cloud TPU, ...). Each process runs its
share of the chunks on its own devices and writes its own chunk files, and process 0 writes the
reports once all are done. On plain machines, start one process per host:

  python -m experiments.sweep ... --multihost --coordinator_address=HOST0:1234 \
      --num_processes=2 --process_id=0      # and --process_id=1 on the other host
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import ml_collections
from absl import app, flags
from ml_collections import config_flags

from experiments import loto
from experiments.configs.loto import comma_values, library_configs
from tarch import atomic, evaluate, report, simulate, sweep

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The binary's flags. Defined only by its entry point, so that the experiment modules
  import side by side (tests) without clashing flag names."""
  config_flags.DEFINE_config_file(
      "config", os.path.join(os.path.dirname(__file__), "configs", "sweep.py"),
      "Sweep config file (append :tiny for the smoke-test variant).")
  loto.define_data_flags()
  flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() and split the "
                    "chunks over the processes.")
  flags.DEFINE_string("coordinator_address", None, "With --multihost: host:port of process "
                      "0 (default: JAX_COORDINATOR_ADDRESS or cluster auto-detection).")
  flags.DEFINE_integer("num_processes", None, "With --multihost: how many processes (default: "
                       "cluster auto-detection).")
  flags.DEFINE_integer("process_id", None, "With --multihost: this process's index, 0 to "
                       "num_processes - 1 (default: cluster auto-detection).")


def spec_of(config: ml_collections.ConfigDict, held_out: list[int]) -> sweep.Spec:
  """The `tarch.sweep.Spec` of a sweep config."""
  unknown = set(config.sweep.keys()) - set(sweep.SWEEPABLE) - {"seeds"}
  if unknown:
    raise ValueError(f"cannot sweep {sorted(unknown)}; sweepable: seeds, "
                     f"{', '.join(sweep.SWEEPABLE)}")
  values = {n: comma_values(f"--config.sweep.{n}", config.sweep[n]) for n in sweep.SWEEPABLE}
  grid = tuple((n, v) for n, v in values.items() if v)
  return sweep.Spec(tasks=tuple(held_out),
                    seeds=comma_values("--config.sweep.seeds", config.sweep.seeds, int),
                    grid=grid)


def run(config: ml_collections.ConfigDict, workdir: str, data_dir: str | None = None,
        benchmark: str | None = None, tasks: Sequence[str] | None = None,
        process_index: int = 0, process_count: int = 1) -> dict | None:
  """Runs (or resumes) the sweep; returns the summary dict (None on processes other than 0)."""
  os.makedirs(workdir, exist_ok=True)
  if process_count > 1 and process_index != 0:  # process 0 converts a benchmark, once
    _sync("tarch sweep data ready")
  ds, held_out = evaluate.load_held_out(workdir, data_dir, benchmark, tasks)
  if process_count > 1 and process_index == 0:
    _sync("tarch sweep data ready")
  spec = spec_of(config, held_out)
  if process_index == 0:
    for note in evaluate.degenerate_notes(ds, held_out):
      print(f"note: {note}", flush=True)
    atomic.atomic_write_text(os.path.join(workdir, "config.json"),
                             config.to_json_best_effort(indent=2))
  net, train, infer_config = library_configs(config)
  static, _ = simulate.split(ds.space, net, train, infer_config)
  print(f"{len(spec.simulations())} simulations: {len(held_out)} held-out tasks x "
        f"{len(spec.seeds)} seeds x {len(spec.configs())} configurations, on "
        f"{jax.local_device_count()} {jax.devices()[0].platform} device(s)", flush=True)
  store = os.path.join(workdir, "simulations")
  outcomes = sweep.run(ds, static, train, infer_config, spec, store,
                       chunk_size=config.chunk_size,
                       progress=lambda line: print(line, flush=True),
                       process_index=process_index, process_count=process_count)
  if process_count > 1:
    _sync("tarch sweep chunks written")
    if process_index != 0:
      return None
    # Loads every process's chunks (and runs, here, any simulation none of them finished).
    outcomes = sweep.run(ds, static, train, infer_config, spec, store,
                         chunk_size=config.chunk_size, progress=None)
  swept = [n for n, _ in spec.grid]
  results = evaluate.result_rows(ds, outcomes)
  results = results[swept + ["seed"] + evaluate.RESULT_COLUMNS]
  atomic.atomic_write(os.path.join(workdir, "sweep_results.csv"),
                      lambda tmp: results.to_csv(tmp, index=False))
  summary = report.sweep_summary(results, swept)
  atomic.atomic_write_json(os.path.join(workdir, "sweep_summary.json"), summary)
  report.plot_sweep(summary, os.path.join(workdir, "sweep_regret.png"))
  for c in summary["configs"]:
    label = ", ".join(f"{k}={v:g}" for k, v in c["config"].items()) or "base config"
    line = "  ".join(f"{m} {s['mean_normalized_regret']:.3f}+-{s['se'] or float('nan'):.3f}"
                     for m, s in c["methods"].items() if m in ("tarch", "best_on_average",
                                                                "random_10", "task_kernel"))
    print(f"{label}: {line}")
  print(f"wrote {workdir}/sweep_results.csv, sweep_summary.json, sweep_regret.png")
  return summary


def _sync(name: str) -> None:
  """A barrier across the processes of a multihost run."""
  from jax.experimental import multihost_utils
  multihost_utils.sync_global_devices(name)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  index, count = 0, 1
  given = {k: FLAGS[k].value for k in ("coordinator_address", "num_processes", "process_id")
           if FLAGS[k].value is not None}
  if given and not FLAGS.multihost:
    raise app.UsageError(f"--{', --'.join(given)} only apply with --multihost")
  if FLAGS.multihost:
    jax.distributed.initialize(**given)
    index, count = jax.process_index(), jax.process_count()
  run(FLAGS.config, FLAGS.workdir, data_dir=FLAGS.data_dir, benchmark=FLAGS.benchmark,
      tasks=FLAGS.tasks, process_index=index, process_count=count)


if __name__ == "__main__":
  define_flags()
  app.run(main)
