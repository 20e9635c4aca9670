"""Where V's free gradient ascent lands, and how its picks score when the table can judge them.

  python benchmarks/ascent_picks.py [--benchmark=nasbench_graph | --data_dir=DIR]
      [--seeds 0] [--config '']

For every held-out task (and seed), fits the default model on the other tasks
(`tarch.meta_train.fit`, V ranking alone) and runs `tarch.infer` without a pool: the ascent may
propose any architecture of the space. Each of its 10 candidates is looked up in the meta-dataset:
on the training table (evaluated by some training task) or not, and in the held-out task's pool
(evaluated on it, so its test score judges it) or not. Prints per task whether the top candidate
is off the training table and in the pool, its normalised regret when it is in the pool, and,
for comparison on the same task, the regret of V's best pool member (what the pooled ascent and
`tarch_rank` with V pick) and of best_on_average. The summary: the share of top candidates (and
of all candidates) off the training table and in the pool, and the mean regrets over the tasks
whose top candidate is in the pool (paired, with the standard error of the difference). The
last line is `ascent_top_off_table=X`, the share of top candidates off the training table.
"""

import argparse
import dataclasses
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs.loto import get_config, library_configs
from tarch import adapters, baselines, infer, meta_train, metrics, runs, tables


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--benchmark", default="nasbench_graph")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--config", default="", help="variant of experiments/configs/loto.py")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    ds = runs.load_meta_dataset(adapters.prepare(
        tmp, args.data_dir, None if args.data_dir else args.benchmark))
  net, train, infer_config = library_configs(get_config(args.config))
  enc_AxE = np.asarray(ds.enc_AxE, np.float32)
  table = tables.PercentileTable.build(ds)
  evaluated_TxA = np.asarray(table.evaluated_TxA)
  test_TxA = np.full((ds.num_tasks, ds.num_archs), np.nan)
  test_TxA[ds.task_R, ds.arch_R] = ds.test_score_R
  rows = []
  print(f"{'seed':>4s} {'task':36s} {'off table':>9s} {'in pool':>7s} {'ascent':>7s} "
        f"{'V pool':>7s} {'boa':>7s}")
  for seed in (int(s) for s in args.seeds.split(",")):
    tc = dataclasses.replace(train, seed=seed, blend=False)
    for t in range(ds.num_tasks):
      train_T = np.arange(ds.num_tasks) != t
      model, _ = meta_train.fit(ds, net, tc, train_tasks=np.flatnonzero(train_T),
                                train_cost_model=False)
      features = jnp.asarray(ds.features_TxF[t], jnp.float32)
      out = infer.infer(model, ds.space, features, jax.random.fold_in(jax.random.key(seed), t),
                        infer_config)
      nearest = tables.table_rows(enc_AxE, out.encodings)
      cand = np.where(np.all(enc_AxE[nearest] == out.encodings, 1), nearest, -1)  # -1: none
      trained_A = evaluated_TxA[train_T].any(0)
      off_table = [a < 0 or not trained_A[a] for a in cand]
      in_pool = [a >= 0 and evaluated_TxA[t, a] for a in cand]
      pool_A = evaluated_TxA[t]
      test_P = test_TxA[t, pool_A]
      regret = lambda a: metrics.normalized_regret(test_TxA[t, a], test_P)
      value_A = np.asarray(model.predict(features, jnp.asarray(enc_AxE)))
      v_pool = regret(int(baselines.best_in_pool(jnp.asarray(value_A), jnp.asarray(pool_A))))
      boa = regret(int(baselines.best_on_average(table, jnp.asarray(train_T),
                                                 jnp.asarray(pool_A))))
      ascent = regret(cand[0]) if in_pool[0] else np.nan
      rows.append(dict(off=off_table, in_pool=in_pool, ascent=ascent, v_pool=v_pool, boa=boa))
      print(f"{seed:4d} {ds.task_names[t][:36]:36s} {str(off_table[0]):>9s} "
            f"{str(in_pool[0]):>7s} {ascent:7.3f} {v_pool:7.3f} {boa:7.3f}", flush=True)
  top_off = np.mean([r["off"][0] for r in rows])
  all_off = np.mean([x for r in rows for x in r["off"]])
  top_in = np.mean([r["in_pool"][0] for r in rows])
  all_in = np.mean([x for r in rows for x in r["in_pool"]])
  print(f"top candidates off the training table: {top_off:.3f}, in the held-out pool: "
        f"{top_in:.3f}; all {len(rows[0]['off'])} candidates: {all_off:.3f} off, {all_in:.3f} in")
  judged = [r for r in rows if np.isfinite(r["ascent"])]
  if judged:
    a = np.array([r["ascent"] for r in judged])
    for name in ("v_pool", "boa"):
      b = np.array([r[name] for r in judged])
      d = a - b
      se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
      print(f"where the top candidate is in the pool ({len(judged)} of {len(rows)}): ascent "
            f"{a.mean():.3f}, {name} {b.mean():.3f}, ascent - {name} {d.mean():+.3f} +- {se:.3f}")
  print(f"ascent_top_off_table={top_off:.3f}")


if __name__ == "__main__":
  main()
