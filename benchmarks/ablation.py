"""Ablation of tarch's ingredients on a LOTO benchmark: what each one contributes.

  python benchmarks/ablation.py [--benchmark=nasbench_graph | --data_dir=DIR] [--seeds=0,1,2]

Runs the full leave-one-task-out evaluation (one `tarch.sweep` over every fold x seed) for the
default config and for variants that each remove or change one ingredient, over several seeds (value-network initialisation, batches,
held-out split and ascent starts), and prints a markdown table of `tarch`'s and `tarch_rank`'s
mean normalised regret (mean and std over seeds), with the seed-independent baselines below it.
"""

import argparse
import os
import tempfile
import time

import numpy as np

from experiments.configs.loto import get_config, library_configs
from tarch import adapters, evaluate, runs, simulate, sweep

# name -> (description, {"group.field": value} overrides of the default config)
VARIANTS = {
    "default": ("as shipped", {}),
    "mse": ("regression loss instead of pairwise ranking", {"train.loss": "mse"}),
    "no_meta_features": ("V without the meta-feature term", {"value_net.use_meta_features": False}),
    "no_shrinkage": ("meta-feature term kept at full scale", {"train.task_effect_scales": (1.0,)}),
    "best_scale": ("shrinkage: best held-out scale, not the 1-SE rule's",
                   {"train.shrinkage_rule": "best"}),
    "no_mf_dropout": ("no meta-feature dropout in training", {"train.meta_feature_dropout": 0.0}),
    "no_interactions": ("V without the interaction MLP (additive)",
                        {"value_net.interaction_hidden": ()}),
    "no_interaction_dropout": ("interaction term trained always on (still shrunk after)",
                               {"train.interaction_dropout": 0.0}),
    "single_member": ("ensemble of 1", {"train.ensemble_size": 1}),
    "ensemble_16": ("ensemble of 16", {"train.ensemble_size": 16}),
    "uniform_tasks": ("tasks sampled uniformly, not by results", {"train.task_weighting": "uniform"}),
    "loss_early_stop": ("early stopping on held-out loss", {"train.early_stopping": "loss"}),
    "no_early_stop": ("no held-out tasks: stopping and shrinkage judged on training pairs",
                      {"train.holdout_tasks": 0, "train.patience": 10**6}),
    "pessimism": ("rank by mean - 1 std of the ensemble", {"infer.pessimism": 1.0}),
    "ensemble_ascent": ("every restart ascends the ensemble mean, not one member's V",
                        {"infer.ascent": "ensemble"}),
    "value_net_only": ("V always ranks: no blend with the task kernels and best_on_average",
                       {"train.blend": False}),
}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--benchmark", default="nasbench_graph")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = adapters.prepare(tmp, args.data_dir, None if args.data_dir else args.benchmark)
    ds = runs.load_meta_dataset(data_dir)
  rows, baselines = [], {}
  for name in args.variants.split(","):
    description, overrides = VARIANTS[name]
    per_seed = {"tarch": [], "tarch_rank": []}
    start = time.perf_counter()
    config = get_config()
    for key, value in overrides.items():
      group, field = key.split(".")
      config[group][field] = value
    net, train, infer_config = library_configs(config)
    static, _ = simulate.split(ds.space, net, train, infer_config)
    spec = sweep.Spec(tasks=tuple(range(ds.num_tasks)), seeds=tuple(seeds))
    with tempfile.TemporaryDirectory() as store:
      outcomes = sweep.run(ds, static, train, infer_config, spec, store, progress=None)
    results = evaluate.result_rows(ds, outcomes)
    by_seed = results.groupby(["method", "seed"]).normalized_regret.mean()
    for method, values in per_seed.items():
      values.extend(by_seed[method].loc[seeds].tolist())
    for method in evaluate.METHODS:
      if not method.startswith("tarch"):
        baselines[method] = by_seed[method].mean()
    rows.append((name, description, per_seed, time.perf_counter() - start))
    print(f"{name}: tarch {np.mean(per_seed['tarch']):.3f} +- {np.std(per_seed['tarch']):.3f}",
          flush=True)
  print(f"\n{os.path.basename(data_dir.rstrip('/'))}: {ds.num_tasks} tasks, seeds {seeds}\n")
  print("| variant | change | tarch regret | tarch_rank regret | seconds/seed |")
  print("|---|---|---|---|---|")
  for name, description, per_seed, seconds in rows:
    cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in per_seed.values()]
    print(f"| {name} | {description} | {cells[0]} | {cells[1]} | {seconds / len(seeds):.0f} |")
  print("\n| baseline | regret |\n|---|---|")
  for method, value in sorted(baselines.items(), key=lambda kv: kv[1]):
    print(f"| {method} | {value:.3f} |")


if __name__ == "__main__":
  main()
