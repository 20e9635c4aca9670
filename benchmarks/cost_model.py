"""How well does the cost model rank a held-out task's costs? Leave-one-task-out.

  python benchmarks/cost_model.py [--benchmark=nasbench_graph | --data_dir=DIR]
      [--task_weights=0,0.25,0.5,0.75,1]

For every task, fits `tarch.cost_model` on the others and prints the Spearman correlation, over
the task's evaluated architectures, between its actual log costs and: the cost model's
prediction, the model's task-aware and across-task outputs alone (its mix forced to 1 or 0), and
the training tasks' mean log cost per architecture (what best_on_average's cost-aware analogue
uses); then the means over tasks, and the mix each fold chose. The last line is
`mean_spearman_cost_model=X`.
"""

import argparse
import tempfile

import jax.numpy as jnp
import numpy as np
import scipy.stats

from tarch import adapters, cost_model, runs


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--benchmark", default="nasbench_graph")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--task_weights", default="0,0.25,0.5,0.75,1")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    ds = runs.load_meta_dataset(adapters.prepare(
        tmp, args.data_dir, None if args.data_dir else args.benchmark))
  config = cost_model.CostConfig(
      task_weights=tuple(float(w) for w in args.task_weights.split(",")))
  table, _ = cost_model.log_cost_table(ds)
  columns = ("cost_model", "task_aware", "across_task", "training_mean")
  rho = {c: [] for c in columns}
  print(f"{'task':40s} {'w':>5s} " + " ".join(f"{c:>13s}" for c in columns))
  for t in range(ds.num_tasks):
    others = np.delete(np.arange(ds.num_tasks), t)
    model = cost_model.fit(ds, config, train_tasks=others)
    evaluated = np.flatnonzero(np.isfinite(table[t]))
    features = jnp.asarray(ds.features_TxF[t], jnp.float32)
    enc = jnp.asarray(ds.enc_AxE[evaluated])
    mean_cost = np.nanmean(table[others][:, evaluated], axis=0)
    predictions = {
        "cost_model": model.predict_log(features, enc),
        "task_aware": model.replace(task_weight=jnp.float32(1)).predict_log(features, enc),
        "across_task": model.replace(task_weight=jnp.float32(0)).predict_log(features, enc),
        "training_mean": np.where(np.isnan(mean_cost), np.nanmean(mean_cost), mean_cost),
    }
    for c in columns:
      rho[c].append(scipy.stats.spearmanr(np.asarray(predictions[c]), table[t, evaluated])[0])
    print(f"{ds.task_names[t][:40]:40s} {float(model.task_weight):5.2f} "
          + " ".join(f"{rho[c][-1]:13.3f}" for c in columns), flush=True)
  print(f"{'mean':40s} {'':5s} " + " ".join(f"{np.mean(rho[c]):13.3f}" for c in columns))
  print(f"mean_spearman_cost_model={np.mean(rho['cost_model']):.3f}")


if __name__ == "__main__":
  main()
