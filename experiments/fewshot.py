r"""Few-shot search binary: after the zero-shot pick, how fast each method finds a good one.

  python -m experiments.fewshot --benchmark=nasbench_graph --workdir=/tmp/fewshot
  python -m experiments.fewshot --data_dir=DIR --workdir=/tmp/fewshot [--tasks=a,b] \
      [--config.seeds=0,1,2] [--config.budget=20] [--config.refine_grid.prior_strength=0.5,3]

For every held-out task (and seed), one simulation (`tarch.fewshot`): fit the model on the other
tasks as LOTO does, then let every method train up to `budget` architectures of the held-out
task one after another, each training returning the table's validation score (never its test
score); after b trainings the best by validation is kept and judged by its test score. The
simulations run through `tarch.sweep` (vmapped in chunks, sharded over every device, each chunk
written atomically; a rerun resumes). `--config.refine_grid.<field>=v1,v2` adds tarch's search
with other refinement settings as more methods on the same folds (`experiments.configs.fewshot`).
It prints each method's mean regret per budget and tarch's paired difference to every other
method. Writes into the workdir:

  config.json            the config used
  simulations/           finished chunks (reused by a rerun with the same config, data and code)
  fewshot_results.csv    one row per seed x task x method x budget: the kept architecture,
                         its test_score and normalized_regret
  fewshot_summary.json   {"methods": {method: {"regret_at": {"1", "3", "5", "10", "20"},
                          "num_tasks"}}}: means over held-out tasks (seeds averaged first)
  fewshot_regret.png     regret against budget, one curve per method
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from experiments import loto
from experiments.configs.fewshot import refine_config, refine_variants
from experiments.configs.loto import comma_values, library_configs
from tarch import atomic, evaluate, fewshot, report, sweep

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The binary's flags (defined by its entry point only, as in `experiments.loto`)."""
  config_flags.DEFINE_config_file(
      "config", os.path.join(os.path.dirname(__file__), "configs", "fewshot.py"),
      "Few-shot config file (append :tiny for the smoke-test variant).")
  loto.define_data_flags()


def program(ds, config: ml_collections.ConfigDict) -> tuple[sweep.Program, fewshot.Static]:
  """The sweep program of a few-shot config and its static part."""
  net, train, infer_config = library_configs(config)
  refine_cfg = refine_config(config)
  variants = refine_variants(config)
  split = lambda tc, ic: fewshot.split(ds.space, net, tc, ic, refine_cfg, int(config.budget),
                                       variants)
  # The refinement's settings are traced, and no sweep point varies them: the fingerprint
  # holds them, so that a rerun with other settings recomputes.
  return (sweep.Program(name="fewshot", split=split, batch=_BATCH, result_type=fewshot.Result,
                        settings=repr((refine_cfg, variants))),
          split(train, infer_config)[0])


def seeds_of(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The seeds of `--config.seeds` (comma-separated integers)."""
  seeds = comma_values("--config.seeds", config.seeds, int)
  if not seeds:
    raise ValueError("--config.seeds: give at least one seed")
  return seeds


def run(config: ml_collections.ConfigDict, workdir: str, data_dir: str | None = None,
        benchmark: str | None = None, tasks: Sequence[str] | None = None) -> dict:
  """Runs (or resumes) the few-shot simulations; returns the summary dict."""
  os.makedirs(workdir, exist_ok=True)
  ds, held_out = evaluate.load_held_out(workdir, data_dir, benchmark, tasks)
  for note in evaluate.degenerate_notes(ds, held_out):
    print(f"note: {note}", flush=True)
  seeds = seeds_of(config)
  prog, static = program(ds, config)
  atomic.atomic_write_text(os.path.join(workdir, "config.json"),
                           config.to_json_best_effort(indent=2))
  _, train, infer_config = library_configs(config)
  spec = sweep.Spec(tasks=tuple(held_out), seeds=seeds)
  print(f"{len(spec.simulations())} few-shot simulations ({len(held_out)} held-out tasks x "
        f"{len(seeds)} seeds), {static.budget} trainings per method", flush=True)
  outcomes = sweep.run(ds, static, train, infer_config, spec,
                       os.path.join(workdir, "simulations"), chunk_size=config.chunk_size,
                       progress=lambda line: print(line, flush=True), program=prog)
  results = evaluate.fewshot_rows(ds, outcomes, static.budget, fewshot.methods(static))
  atomic.atomic_write(os.path.join(workdir, "fewshot_results.csv"),
                      lambda tmp: results.to_csv(tmp, index=False))
  summary = report.fewshot_summary(results)
  atomic.atomic_write_json(os.path.join(workdir, "fewshot_summary.json"), summary)
  report.plot_fewshot(results, os.path.join(workdir, "fewshot_regret.png"))
  curves = report.fewshot_curves(results)
  shown = [b for b in report.FEWSHOT_BUDGETS if b in curves.columns]
  print("mean normalised regret after b trainings (lower is better)")
  print(curves[shown].to_string(float_format=lambda x: f"{x:.3f}"))
  print("tarch minus each method, paired per task (seeds averaged first; mean +- SE over "
        "tasks; negative: tarch is better)")
  print(report.fewshot_paired(results, "tarch").to_string())
  print(f"wrote {workdir}/fewshot_results.csv, fewshot_summary.json, fewshot_regret.png")
  return summary


_BATCH = sweep.jit_batch(fewshot.simulate_batch)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  run(FLAGS.config, FLAGS.workdir, data_dir=FLAGS.data_dir, benchmark=FLAGS.benchmark,
      tasks=FLAGS.tasks)


if __name__ == "__main__":
  define_flags()
  app.run(main)
