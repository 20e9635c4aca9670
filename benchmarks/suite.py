"""Generality suite: leave-one-task-out on meta-datasets that differ in kind.

  python benchmarks/suite.py [--workdir=DIR] [--seeds=0] [--only=name,...] [--config=VARIANT]
                             [--set group.field=value ...] [--compare=OTHER_WORKDIR]

tarch's defaults must hold on meta-datasets nobody tuned them on; this suite is where they are
chosen and judged. For each meta-dataset (`SUITE`) it runs every fold and seed as one sweep
(`tarch.sweep`) and prints tarch's, best_on_average's, random_10's and random_50's mean
normalised regret, the paired difference tarch - best_on_average (per task, seeds averaged
first) with its standard error over tasks, and the mean weights of the ranker's blend
(`tarch.ranker`). The generated tables are built here with `experiments.generate` (smaller than
the default one, so that the whole suite runs in minutes); everything is cached in the workdir
and a rerun resumes (a change to tarch's source regenerates the tables and reruns the
simulations, as the caches' fingerprints require). Writes `WORKDIR/suite_summary.json`:

  {"meta_datasets": {"<name>": {"methods": {"<method>": {"mean_normalized_regret": float}},
                                "tarch_minus_best_on_average": float, "se": float}}}

and `WORKDIR/suite_results.csv`, every held-out task's normalised regret per method and seed.
`--set value_net.task_interactions=True` (repeatable; any field of the LOTO config's groups)
runs a variant of the defaults, and `--compare=OTHER_WORKDIR` prints, per meta-dataset, tarch's
paired difference to the tarch of another run's `suite_results.csv` (per task, seeds averaged
first, with its standard error over tasks): how a change of default is judged on the suite.

The last line is `suite_worst_paired_diff_vs_boa=X`: the largest tarch - best_on_average over
the meta-datasets (lower is better; <= 0 means tarch is never behind on average).
"""

import argparse
import ast
import dataclasses
import json
import os
import time

import numpy as np
import pandas as pd

from experiments import generate
from experiments.configs import offline
from experiments.configs.loto import get_config, library_configs
from tarch import (adapters, atomic, evaluate, fingerprint, ranker, runs, simulate, sweep,
                   synthetic, tasks)


@dataclasses.dataclass(frozen=True)
class MetaDataset:
  description: str
  build: str  # how to get it: "benchmark", "generate" or "synthetic"
  options: dict
  by_source: bool = False  # hold out each task's whole source dataset (generated tables)


SUITE = {
    "nasbench_graph": MetaDataset(
        "9 graph datasets x 26,206 GNN architectures (NAS-Bench-Graph)", "benchmark",
        {"name": "nasbench_graph"}),
    "generated": MetaDataset(
        "24 tasks from digits, mnist_5k, breast_cancer x 64 MLPs", "generate",
        {"num_tasks": 24, "num_architectures": 64, "sources": tasks.DEFAULT_BUNDLED,
         "num_steps": 150}),
    "generated_by_source": MetaDataset(
        "the same table, each task judged with its whole source dataset held out", "generate",
        {"num_tasks": 24, "num_architectures": 64, "sources": tasks.DEFAULT_BUNDLED,
         "num_steps": 150}, by_source=True),
    "generated_other": MetaDataset(
        "18 tasks from wine and digits x 48 MLPs, shorter child training", "generate",
        {"num_tasks": 18, "num_architectures": 48, "sources": ("wine", "digits"),
         "num_steps": 80}),
    "synthetic_none": MetaDataset(
        "12 synthetic tasks whose scores ignore the meta-features", "synthetic",
        {"relatedness": 0.0}),
    "synthetic_strong": MetaDataset(
        "12 synthetic tasks whose scores turn on the meta-features", "synthetic",
        {"relatedness": 3.0}),
    "synthetic_hidden": MetaDataset(
        "12 synthetic tasks that differ in ways their meta-features do not show", "synthetic",
        {"relatedness": 0.0, "hidden": 1.0}),
}
METHODS = ("tarch", "best_on_average", "random_10", "random_50", "tarch_rank", "task_kernel",
           "knn", "oracle")


def _generated(workdir: str, options: dict) -> str:
  config = offline.get_config()
  config.tasks.num_tasks = options["num_tasks"]
  config.tasks.offline_sources = tuple(options["sources"])
  config.num_architectures = options["num_architectures"]
  config.num_seeds = 1
  config.batch_models = 512
  config.child.num_steps = options["num_steps"]
  # One directory per tarch source: generation refuses a workdir whose plan another source made.
  key = "_".join([*options["sources"], str(options["num_tasks"]),
                  str(options["num_architectures"]), str(options["num_steps"]),
                  fingerprint.source_digest()[:12]])
  return generate.run(config, os.path.join(workdir, "generated", key), progress=lambda _: None)


def load(name: str, workdir: str) -> tuple[runs.MetaDataset, np.ndarray | None]:
  """The meta-dataset `name` of `SUITE` (built or converted into `workdir` once) and, for a
  by-source member, each task's source as a group."""
  spec = SUITE[name]
  if spec.build == "benchmark":
    directory = os.path.join(workdir, "benchmarks", spec.options["name"])
    data_dir = adapters.prepare(directory, None, spec.options["name"])
  elif spec.build == "generate":
    data_dir = _generated(workdir, spec.options)
  else:
    data_dir = os.path.join(workdir, "synthetic", name)
    if not all(os.path.exists(os.path.join(data_dir, f))
               for f in ("space.json", "runs.csv", "tasks.csv")):
      space, runs_df, tasks_df = synthetic.make_frames(
          num_tasks=12, archs_per_task=48, noise=0.05, seed=1, **spec.options)
      runs.write_meta_dataset(data_dir, space, runs_df, tasks_df, runs_format="csv")
  ds = runs.load_meta_dataset(data_dir)
  groups = None
  if spec.by_source:
    sources = sorted(spec.options["sources"], key=len, reverse=True)
    source_of = [next(s for s in sources if t.startswith(s + "_")) for t in ds.task_names]
    groups = np.array([sorted(set(source_of)).index(s) for s in source_of])
  return ds, groups


def suite_config(variant: str = "", settings=()):
  """The LOTO config `variant` with `settings` ("group.field=value", the value a Python
  literal, or a bare string) applied."""
  config = get_config(variant)
  for setting in settings:
    key, _, text = setting.partition("=")
    group, _, field = key.partition(".")
    if not text or group not in config or field not in config[group]:
      raise SystemExit(f"--set {setting!r}: expected group.field=value with a field of "
                       f"{sorted(k for k in config if hasattr(config[k], 'keys'))}")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    config[group][field] = value
  return config


def evaluate_one(name: str, workdir: str, seeds, config) -> tuple[dict, pd.DataFrame]:
  """One meta-dataset's row of the suite (method means, paired difference, blend weights) and
  its per-task results (task, method, seed, normalized_regret)."""
  ds, groups = load(name, workdir)
  net, train, infer_config = library_configs(config)
  static, _ = simulate.split(ds.space, net, train, infer_config)
  spec = sweep.Spec(tasks=tuple(range(ds.num_tasks)), seeds=tuple(seeds))
  store = os.path.join(workdir, "simulations", name)
  outcomes = sweep.run(ds, static, train, infer_config, spec, store, progress=None,
                       groups=groups)
  results = evaluate.result_rows(ds, outcomes)
  per_task = results.groupby(["method", "task"]).normalized_regret.mean().unstack("task")
  diff = per_task.loc["tarch"] - per_task.loc["best_on_average"]
  blend = np.mean([o.result.blend_C for o in outcomes], axis=0)
  rows = results[["task", "method", "seed", "normalized_regret"]].assign(meta_dataset=name)
  return {
      "methods": {m: {"mean_normalized_regret": float(per_task.loc[m].mean())}
                  for m in METHODS if m in per_task.index},
      "tarch_minus_best_on_average": float(diff.mean()),
      "se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan"),
      "blend": ranker.describe_blend(blend), "num_tasks": int(ds.num_tasks),
  }, rows


def paired_to(other_csv: str, results: pd.DataFrame, name: str) -> str:
  """tarch here minus tarch in `other_csv` on meta-dataset `name`: mean over tasks (seeds
  averaged first) +- its standard error, and on how many tasks it is lower / higher."""
  other = pd.read_csv(other_csv)
  def per_task(df):
    df = df[(df.meta_dataset == name) & (df.method == "tarch")]
    return df.groupby("task").normalized_regret.mean()
  here, there = per_task(results), per_task(other)
  common = here.index.intersection(there.index)
  if len(common) == 0:
    return f"{name}: not in {other_csv}"
  d = here[common] - there[common]
  se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
  return (f"{name}: tarch - compared tarch {d.mean():+.3f} +- {se:.3f} over {len(d)} tasks "
          f"(lower on {(d < 0).sum()}, higher on {(d > 0).sum()})")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", default="/tmp/tarch_suite")
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--only", default=",".join(SUITE))
  parser.add_argument("--config", default="", help="variant of experiments/configs/loto.py")
  parser.add_argument("--set", action="append", default=[], metavar="GROUP.FIELD=VALUE",
                      help="override a field of the LOTO config (repeatable)")
  parser.add_argument("--compare", default="", metavar="OTHER_WORKDIR",
                      help="print tarch's paired difference to that run's suite_results.csv")
  args = parser.parse_args()
  config = suite_config(args.config, args.set)
  other_csv = os.path.join(args.compare, "suite_results.csv") if args.compare else ""
  if other_csv and not os.path.exists(other_csv):
    raise SystemExit(f"--compare: {other_csv} does not exist")
  seeds = [int(s) for s in args.seeds.split(",")]
  names = args.only.split(",")
  unknown = sorted(set(names) - set(SUITE))
  if unknown:
    raise SystemExit(f"unknown meta-datasets {unknown}; valid: {sorted(SUITE)}")
  os.makedirs(args.workdir, exist_ok=True)
  rows, per_task = {}, []
  for name in names:
    start = time.perf_counter()
    rows[name], results = evaluate_one(name, args.workdir, seeds, config)
    per_task.append(results)
    r = rows[name]
    print(f"{name}: tarch - best_on_average {r['tarch_minus_best_on_average']:+.3f} "
          f"+- {r['se']:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
  print(f"\nseeds {seeds}; mean normalised regret over held-out tasks (lower is better)\n")
  shown = ("tarch", "best_on_average", "random_10", "random_50")
  print("| meta-dataset | tasks | " + " | ".join(shown) +
        " | tarch - best_on_average (SE) | blend (" + " / ".join(ranker.COMPONENTS) + ") |")
  print("|---|---|" + "---|" * len(shown) + "---|---|")
  for name, r in rows.items():
    cells = [f"{r['methods'][m]['mean_normalized_regret']:.3f}" for m in shown]
    weights = " / ".join(f"{w:.2f}" for w in r["blend"].values())
    print(f"| {name} | {r['num_tasks']} | " + " | ".join(cells) +
          f" | {r['tarch_minus_best_on_average']:+.3f} ({r['se']:.3f}) | {weights} |")
  summary = {"meta_datasets": {
      name: {k: r[k] for k in ("methods", "tarch_minus_best_on_average", "se")}
      for name, r in rows.items()}}
  atomic.atomic_write_json(os.path.join(args.workdir, "suite_summary.json"), summary)
  results = pd.concat(per_task, ignore_index=True)
  atomic.atomic_write_text(os.path.join(args.workdir, "suite_results.csv"),
                           results.to_csv(index=False))
  print(f"wrote {args.workdir}/suite_summary.json and suite_results.csv")
  if other_csv:
    print(f"\ncompared with {other_csv}:")
    for name in rows:
      print(paired_to(other_csv, results, name))
  worst = max(r["tarch_minus_best_on_average"] for r in rows.values())
  print(f"suite_worst_paired_diff_vs_boa={worst:.4f}")


if __name__ == "__main__":
  main()
