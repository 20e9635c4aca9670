"""Speed of one `tarch.refine` call after compilation, by number of observations.

  python benchmarks/refine_speed.py [--repeats 30]

Fits the default model (V plus the chosen blend, the training tasks' table attached) on 8
NAS-Bench-Graph tasks, then times `refine` for the ninth (`proteins`) with K = 0, 1, 5, 10, 20 and
50 observed (architecture, validation score) pairs from its own table, q = 1 and q = 8, over the
default candidates (every architecture a training task evaluated) and over the task's own pool.
Each call blocks until its results are on the host; calls with K up to 8 share one compiled
program (padding to 8 slots), K = 10, 20 and 50 compile one each (16, 32 and 64 slots). Each
case is timed side by side as `refine` calls (after the first, the task's refiner is reused: the
candidates are scored once, as in a sequential search) and as a fresh `TaskRefiner` per call
(every candidate scored again). Prints medians (and quartiles) over repeated calls; the last
line is `refine_ms=X`, the median of `refine` with K = 10, q = 1, default candidates.
"""

import argparse
import tempfile
import time

import jax.numpy as jnp
import numpy as np

from experiments.configs.loto import get_config, library_configs
from tarch import meta_train, refine, runs
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
  with tempfile.TemporaryDirectory() as tmp:
    ds = runs.load_meta_dataset(nasbench_graph.convert(tmp))
  net, train, _ = library_configs(get_config())
  model, _ = meta_train.fit(ds, net, train, train_tasks=range(8))
  task = ds.task_names.index("proteins")
  features = jnp.asarray(ds.features_TxF[task], jnp.float32)
  rows = ds.task_rows(task)
  pool = np.asarray(ds.enc_AxE[ds.arch_R[rows]])
  rng = np.random.default_rng(0)
  order = rng.permutation(len(rows))
  print(f"{ds.space.name}: {len(rows)} pool members, ensemble of {model.ensemble_size}")
  medians = {}
  for k in (0, 1, 5, 10, 20, 50):
    observed = pool[order[:k]]
    scores = ds.score_R[rows][order[:k]]
    for q, cand, where in ((1, None, "training table"), (8, None, "training table"),
                           (1, pool, "task pool")):
      q1, med, q3 = _time(lambda: refine.refine(model, ds.space, features, observed, scores,
                                                q=q, pool_PxE=cand), args.repeats)
      f1, fresh, f3 = _time(lambda: refine.TaskRefiner(model, ds.space, features, cand)
                            .suggest(observed, scores, q=q), args.repeats)
      medians[(k, q, where)] = med
      print(f"K={k:2d} q={q} over the {where:14s}: refine median {med:7.2f} ms "
            f"(quartiles {q1:.2f}-{q3:.2f}); fresh refiner {fresh:7.2f} ms "
            f"({f1:.2f}-{f3:.2f}), ratio {fresh / med:.1f}", flush=True)
  print(f"refine_ms={medians[(10, 1, 'training table')]:.2f}")


if __name__ == "__main__":
  main()
