"""How related are a meta-dataset's tasks? Rank correlations of scores between tasks.

  python benchmarks/task_similarity.py [--benchmark=nasbench_graph | --data_dir=DIR]

Prints, for every pair of tasks, the Spearman correlation of their validation scores over the
architectures both evaluated, the mean over pairs, and each task's Spearman correlation between
its own validation and test scores (how much a validation-based pick can be trusted there).
"""

import argparse
import tempfile

import numpy as np
import pandas as pd
import scipy.stats

from tarch import adapters
from tarch import runs


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--benchmark", default="nasbench_graph")
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    ds = runs.load_meta_dataset(adapters.prepare(
        tmp, args.data_dir, None if args.data_dir else args.benchmark))
  score_TxA = np.full((ds.num_tasks, ds.num_archs), np.nan)
  score_TxA[ds.task_R, ds.arch_R] = ds.score_R
  rho = np.full((ds.num_tasks, ds.num_tasks), np.nan)
  for i in range(ds.num_tasks):
    for j in range(ds.num_tasks):
      both = ~np.isnan(score_TxA[i]) & ~np.isnan(score_TxA[j])
      if i != j and both.sum() > 2:
        rho[i, j] = scipy.stats.spearmanr(score_TxA[i, both], score_TxA[j, both]).statistic
  names = list(ds.task_names)
  print(pd.DataFrame(rho, index=names, columns=names).round(2).to_string())
  print(f"\nmean Spearman of validation scores between tasks: {np.nanmean(rho):.3f}")
  print("\nSpearman between each task's validation and test scores:")
  for t in range(ds.num_tasks):
    rows = ds.task_rows(t)
    r = scipy.stats.spearmanr(ds.score_R[rows], ds.test_score_R[rows]).statistic
    print(f"  {ds.task_names[t]:20s} {r:.2f}")


if __name__ == "__main__":
  main()
