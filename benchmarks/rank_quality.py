"""How well V ranks a held-out task's architectures, against best_on_average's ranking.

  python benchmarks/rank_quality.py --data_dir=DIR/meta_dataset [--every 3]

For every `--every`-th task held out (leave-one-task-out, default LOTO config): fits the value
network on the other tasks, scores the held-out task's pool with V (`tarch_rank`'s ranking when
the model's ranker is V; `ValueModel.predict`, whichever ranker `fit` chose) and
with best_on_average's mean training-task percentile, and prints each ranking's mean Spearman
correlation with the held-out test scores and the mean normalised regret of each ranking's top
pick. A ranking can be good overall and still pick a worse top architecture: this separates the
two.
"""

import argparse

import jax.numpy as jnp
import numpy as np
import scipy.stats

from experiments.configs.loto import get_config, library_configs
from tarch import meta_train, metrics, runs, tables


def _spearman(a, b) -> float:
  """Spearman correlation; tied scores (accuracies often tie) share their average rank."""
  return float(scipy.stats.spearmanr(a, b).statistic)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--every", type=int, default=3)
  args = parser.parse_args()
  ds = runs.load_meta_dataset(args.data_dir)
  net, train, _ = library_configs(get_config())
  table = tables.PercentileTable.build(ds)
  rows = []
  for task in range(0, ds.num_tasks, args.every):
    others = [t for t in range(ds.num_tasks) if t != task]
    model, _ = meta_train.fit(ds, net, train, train_tasks=others)
    task_rows = ds.task_rows(task)
    arch, test = ds.arch_R[task_rows], ds.test_score_R[task_rows]
    v = np.asarray(model.predict(jnp.asarray(ds.features_TxF[task], jnp.float32),
                                 jnp.asarray(ds.enc_AxE[arch])))
    weight = np.zeros(ds.num_tasks, np.float32)
    weight[others] = 1.0
    boa = np.asarray(table.scores(weight))[arch]
    rows.append([_spearman(v, test), _spearman(boa, test),
                 metrics.normalized_regret(test[np.argmax(v)], test),
                 metrics.normalized_regret(test[np.argmax(boa)], test)])
    print(f"{ds.task_names[task]}: spearman V {rows[-1][0]:.3f} boa {rows[-1][1]:.3f}; "
          f"top-pick regret V {rows[-1][2]:.3f} boa {rows[-1][3]:.3f}", flush=True)
  mean = np.mean(rows, axis=0)
  print(f"{len(rows)} folds: mean spearman with test scores V {mean[0]:.3f}, best_on_average "
        f"{mean[1]:.3f}; mean top-pick regret V {mean[2]:.3f}, best_on_average {mean[3]:.3f}")


if __name__ == "__main__":
  main()
