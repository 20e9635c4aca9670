r"""Leave-one-task-out (LOTO) evaluation binary: a sweep of one configuration.

  python -m experiments.loto --benchmark=nasbench_graph --workdir=/tmp/loto
  python -m experiments.loto --data_dir=DIR --workdir=/tmp/loto [--tasks=a,b]

For each held-out task, one task simulation (`tarch.simulate`): fit the value-network ensemble
on the other tasks, let every method pick an architecture for the held-out task, and score the
picks. The folds run through `tarch.sweep` (vmapped in chunks, sharded over every device), the
same code path as `experiments.sweep`. Writes into the workdir:

  config.json          the config used
  meta_dataset/        the converted benchmark (with --benchmark)
  folds/               finished chunks of folds, written atomically; a rerun with the same
                       config, data and code reuses them, so a killed run resumes
  loto_results.csv     one row per held-out task x method
  loto_summary.json    {"methods": {method: {mean_normalized_regret, mean_percentile, num_tasks}}}
  loto_regret.png      mean normalised regret per method, with each task's value

With `--config.cost_weights=...` (or `--config=experiments/configs/loto.py:cost`, the default grid
`tarch.infer.DEFAULT_COST_WEIGHTS`), each fold is also run cost-aware (`tarch.pareto`: a cost
model trained on the fold's training tasks, tarch's and best_on_average's picks at every
trade-off weight, and under a budget at the held-out pool's median cost), and it writes:

  folds_cost/          finished chunks of the cost-aware folds (resumable as folds/)
  loto_pareto.csv      one row per held-out task x method x front point (kind "front": actual
                       regret and log cost, the weights that picked it) or budget pick ("budget")
  loto_pareto.json     {"methods": {method: {mean_hypervolume, num_tasks}}, plus the paired
                       hypervolume difference, the budget picks' regrets and the cost model's fit}
  loto_pareto.png      the fronts of the first held-out tasks
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ml_collections
import pandas as pd
from absl import app, flags
from ml_collections import config_flags

from experiments.configs.loto import cost_config, library_configs
from tarch import adapters, atomic, evaluate, pareto, ranker, report, simulate, sweep

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The binary's flags. Defined only by its entry point, so that the experiment modules
  import side by side (tests) without clashing flag names."""
  config_flags.DEFINE_config_file(
      "config", os.path.join(os.path.dirname(__file__), "configs", "loto.py"),
      "LOTO config file (append :tiny for the smoke-test variant).")
  define_data_flags()


def define_data_flags() -> None:
  """--workdir, --data_dir, --benchmark and --tasks (LOTO's and experiments.sweep's)."""
  flags.DEFINE_string("workdir", None, "Directory for results; reruns resume here.")
  flags.DEFINE_string("data_dir", None, "A meta-dataset directory (see README).")
  flags.DEFINE_string("benchmark", None,
                      f"A built-in benchmark: {', '.join(adapters.BENCHMARKS)}.")
  flags.DEFINE_list("tasks", None, "Hold out only these tasks (default: every task).")
  flags.mark_flag_as_required("workdir")


def run(config: ml_collections.ConfigDict, workdir: str, data_dir: str | None = None,
        benchmark: str | None = None, tasks: Sequence[str] | None = None) -> dict:
  """Runs (or resumes) the LOTO evaluation; returns the summary dict."""
  os.makedirs(workdir, exist_ok=True)
  ds, held_out = evaluate.load_held_out(workdir, data_dir, benchmark, tasks)
  if config.cost_weights:  # before any fold runs
    pareto.check_inputs(ds, config.cost_weights)
  for note in evaluate.degenerate_notes(ds, held_out):
    print(f"note: {note}", flush=True)
  atomic.atomic_write_text(os.path.join(workdir, "config.json"),
                           config.to_json_best_effort(indent=2))
  net, train, infer_config = library_configs(config)
  static, _ = simulate.split(ds.space, net, train, infer_config)
  outcomes = sweep.run(ds, static, train, infer_config,
                       sweep.Spec(tasks=tuple(held_out), seeds=(config.seed,)),
                       os.path.join(workdir, "folds"), chunk_size=config.chunk_size,
                       progress=lambda line: print(line, flush=True))
  for o in outcomes:
    regret = dict(zip(simulate.METHODS, o.result.regret_K.tolist()))
    blend = ", ".join(f"{name} {w:.2f}" for name, w in
                      ranker.describe_blend(o.result.blend_C).items() if w > 0)
    print(f"{ds.task_names[o.task]}: regret tarch {regret['tarch']:.3f}, best_on_average "
          f"{regret['best_on_average']:.3f} ({int(o.result.train_steps)} steps, ranked by "
          f"{blend})", flush=True)
  results = evaluate.result_rows(ds, outcomes)[evaluate.RESULT_COLUMNS]
  atomic.atomic_write(os.path.join(workdir, "loto_results.csv"),
                      lambda tmp: results.to_csv(tmp, index=False))
  summary = report.loto_summary(results)
  atomic.atomic_write_json(os.path.join(workdir, "loto_summary.json"), summary)
  report.plot_regret(results, os.path.join(workdir, "loto_regret.png"))
  print(report.format_table(results))
  print(f"wrote {workdir}/loto_results.csv, loto_summary.json, loto_regret.png")
  if config.cost_weights:
    _run_cost_aware(config, workdir, ds, held_out, static, train, infer_config)
  return summary


def _run_cost_aware(config, workdir, ds, held_out, static, train, infer_config) -> dict:
  """The cost-aware folds and their fronts (`tarch.pareto`); returns loto_pareto.json's dict."""
  weights = tuple(config.cost_weights)
  program = pareto.program(ds, static, cost_config(config), weights)
  cost_static, _ = program.split(train, infer_config)
  outcomes = sweep.run(ds, cost_static, train, infer_config,
                       sweep.Spec(tasks=tuple(held_out), seeds=(config.seed,)),
                       os.path.join(workdir, "folds_cost"), chunk_size=config.chunk_size,
                       progress=lambda line: print(f"cost-aware: {line}", flush=True),
                       program=program)
  rows, summary = pareto.evaluate_outcomes(ds, outcomes, weights)
  frame = pd.DataFrame(rows)
  atomic.atomic_write(os.path.join(workdir, "loto_pareto.csv"),
                      lambda tmp: frame.to_csv(tmp, index=False))
  atomic.atomic_write_json(os.path.join(workdir, "loto_pareto.json"), summary)
  pareto.plot_fronts(rows, os.path.join(workdir, "loto_pareto.png"))
  for method, m in summary["methods"].items():
    print(f"cost-aware {method}: mean hypervolume {m['mean_hypervolume']:.3f} over "
          f"{m['num_tasks']} tasks")
  diff = summary["tarch_minus_best_on_average_hypervolume"]
  print(f"hypervolume tarch - best_on_average: {diff['mean']:+.3f} +- {diff['se'] or 0:.3f}")
  for method, m in summary["budget"]["methods"].items():
    print(f"under the median-cost budget, {method}: mean normalised regret "
          f"{m['mean_normalized_regret']:.3f}")
  print(f"wrote {workdir}/loto_pareto.csv, loto_pareto.json, loto_pareto.png")
  return summary


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  run(FLAGS.config, FLAGS.workdir, data_dir=FLAGS.data_dir, benchmark=FLAGS.benchmark,
      tasks=FLAGS.tasks)


if __name__ == "__main__":
  define_flags()
  app.run(main)
