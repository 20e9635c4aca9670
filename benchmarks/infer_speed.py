"""Speed of one `tarch.infer` call after compilation (64 restarts x 200 ascent steps).

  python benchmarks/infer_speed.py [--repeats 30]

Fits the default value-network ensemble on 8 NAS-Bench-Graph tasks, then times inference for the
ninth, without a pool (the members' ascent, the default, and the ensemble's) and with its
2,021-member pool (the default, no support term; and with the pool also as the support set, its
density over V's best 256 members), and for comparison one `predict` over the full
26,206-architecture table. The model is timed with V ranking alone (the ascent runs) and, for
the pool, with a blend of V and the table components (`tarch.ranker`; no ascent); and the
cost-aware front (`cost_weights=DEFAULT_COST_WEIGHTS`, the model's cost model of latency).
Prints medians (and quartiles) over repeated calls; each call blocks until its results are on
the host. The last two lines are `infer_pool_ms=Y` (the pool) and `infer_ms=X` (no pool):
medians, default ensemble.
"""

import argparse
import dataclasses
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs.loto import get_config, library_configs
from tarch import infer as infer_lib
from tarch import meta_train, ranker, runs
from tarch.adapters import nasbench_graph


def _time(fn, repeats):
  fn()  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return np.percentile(np.array(times) * 1e3, [25, 50, 75])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=30)
  args = parser.parse_args()
  config = get_config()
  with tempfile.TemporaryDirectory() as tmp:
    ds = runs.load_meta_dataset(nasbench_graph.convert(tmp))
  net, train, infer_config = library_configs(config)
  model, _ = meta_train.fit(ds, net, train, train_tasks=range(8))
  # The ascent runs when V ranks alone; the blend ranks a pool without one (timed separately).
  blend = model.replace(blend_C=jnp.full(len(ranker.COMPONENTS), 1 / len(ranker.COMPONENTS)))
  model = model.replace(blend_C=None)
  assert (infer_config.num_restarts, infer_config.num_steps) == (64, 200), infer_config
  task = ds.task_names.index("proteins")
  features = jnp.asarray(ds.features_TxF[task], jnp.float32)
  pool = jnp.asarray(ds.enc_AxE[ds.arch_R[ds.task_rows(task)]])
  table = jnp.asarray(ds.enc_AxE)
  keys = iter(jax.random.split(jax.random.key(0), 10 * args.repeats))
  print(f"device: {jax.devices()[0].device_kind}, ensemble of {model.ensemble_size}, "
        f"interactions {net.interaction_hidden}, {infer_config.num_restarts} restarts x "
        f"{infer_config.num_steps} steps")
  def pooled(config, support=None):
    return lambda: infer_lib.infer(model, ds.space, features, next(keys), config, pool_PxE=pool,
                                   support_SxE=support)

  p = pool.shape[0]
  weights = infer_lib.DEFAULT_COST_WEIGHTS  # the cost-aware front: every weight in one vmap
  cases = {
      "infer (no pool)": lambda: infer_lib.infer(model, ds.space, features, next(keys),
                                                 infer_config),
      f"infer (pool of {p})": pooled(infer_config),
      "infer (no pool, ensemble ascent)": lambda: infer_lib.infer(
          model, ds.space, features, next(keys),
          dataclasses.replace(infer_config, ascent="ensemble")),
      "infer (pool, pool as support set)": pooled(infer_config, support=pool),
      "infer (pool, ranked by a blend)": lambda: infer_lib.infer(
          blend, ds.space, features, next(keys), infer_config, pool_PxE=pool),
      f"front, {len(weights)} cost weights": lambda: infer_lib.infer(
          model, ds.space, features, next(keys), infer_config, cost_weights=weights),
      f"front, {len(weights)} weights, pool": lambda: infer_lib.infer(
          model, ds.space, features, next(keys), infer_config, pool_PxE=pool,
          cost_weights=weights),
      f"predict all {table.shape[0]}": lambda: np.asarray(model.predict(features, table)),
  }
  medians = {}
  for name, fn in cases.items():
    q1, med, q3 = _time(fn, args.repeats)
    medians[name] = med
    print(f"{name:34s} median {med:7.2f} ms   (quartiles {q1:.2f} / {q3:.2f})")
  print(f"infer_pool_ms={medians[f'infer (pool of {p})']:.2f}")
  print(f"infer_ms={medians['infer (no pool)']:.2f}")


if __name__ == "__main__":
  main()
