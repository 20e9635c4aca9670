"""What one task simulation costs on a large table of tasks that each sampled their own configurations.

  python benchmarks/large_table.py [--tasks 116] [--archs_per_task 1000] [--features 10]
  python benchmarks/large_table.py --write_dir=DIR   # only write the table, for the binaries

Builds a synthetic meta-dataset shaped like a hyperparameter benchmark (`tarch.synthetic`, a
space of 10 integer and float choices, several on log scales; every task samples its own
configurations, so the table has tasks x archs_per_task architectures and each task evaluated
a small part of it), then times, after compilation, one leave-one-task-out simulation of the
default config and its parts: V's training, the ranker's choice (every held-out training task
x blend), the kernel baseline's bandwidth choice and the ascent. Prints the table build time too
(host work, once per meta-dataset). The last line is `simulation_s=X` (median of 3 calls).
With `--write_dir`, writes the table there instead (a meta-dataset directory, for
`python -m experiments.loto --data_dir=DIR`: the whole LOTO run on it).
"""

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs.loto import get_config, library_configs
from tarch import infer, meta_train, ranker, runs, simulate, synthetic, task_kernel
from tarch.space import Float, Integer, Space

SPACE = Space("hyperparameters", (
    Integer("max_depth", 1, 12), Integer("n_estimators", 10, 2000, log=True),
    Float("learning_rate", 1e-3, 1.0, log=True), Float("subsample", 0.1, 1.0),
    Float("colsample", 0.1, 1.0), Float("min_child_weight", 1e-2, 1e2, log=True),
    Float("alpha", 1e-4, 10.0, log=True), Float("lambda", 1e-4, 10.0, log=True),
    Float("gamma", 1e-4, 5.0, log=True), Integer("max_bin", 16, 512, log=True)))


def median_seconds(f, *args, calls=3):
  jax.block_until_ready(f(*args))  # compilation
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--tasks", type=int, default=116)
  parser.add_argument("--archs_per_task", type=int, default=1000)
  parser.add_argument("--features", type=int, default=10)
  parser.add_argument("--write_dir", default="",
                      help="only write the meta-dataset to this directory")
  args = parser.parse_args()
  space, runs_df, tasks_df = synthetic.make_frames(
      SPACE, num_tasks=args.tasks, archs_per_task=args.archs_per_task,
      num_features=args.features, relatedness=0.3, seed=0)
  if args.write_dir:
    runs.write_meta_dataset(args.write_dir, space, runs_df, tasks_df, runs_format="parquet")
    print(f"wrote {args.write_dir}: {args.tasks} tasks, {len(runs_df)} results")
    return
  with tempfile.TemporaryDirectory() as tmp:
    runs.write_meta_dataset(tmp, space, runs_df, tasks_df, runs_format="parquet")
    ds = runs.load_meta_dataset(tmp)
  net, train, infer_config = library_configs(get_config(""))
  static, dyn = simulate.split(ds.space, net, train, infer_config)
  start = time.perf_counter()
  data = simulate.Data.build(ds, train.target)
  print(f"{ds.num_tasks} tasks x {ds.num_archs} architectures ({len(runs_df)} results); "
        f"table build {time.perf_counter() - start:.1f}s", flush=True)

  task = jnp.int32(0)
  mask_T = data.group_T != data.group_T[task]
  key = jax.random.key(0)
  top_quantile = dyn["train"]["top_quantile"]
  train_fn = jax.jit(meta_train.train, static_argnums=(0, 1))
  model, report = train_fn(static.value_net, static.train, dyn["train"], data.train, mask_T, key)
  # The data enter as arguments, not closed-over constants (which XLA would try to fold).
  choose_fn = jax.jit(lambda m, d, held: ranker.choose(
      m, d.table, d.train.features_TxF, mask_T, held, top_quantile)[0])
  chosen = choose_fn(model, data, report.held_MxT)
  parts = {
      "train V": median_seconds(train_fn, static.value_net, static.train, dyn["train"],
                                data.train, mask_T, key),
      "ranker choice": median_seconds(choose_fn, model, data, report.held_MxT),
      "kernel bandwidth": median_seconds(jax.jit(lambda k: task_kernel.choose_bandwidth(
          k, top_quantile)[0].bandwidth), chosen.kernel),
      "ascent over the pool": median_seconds(jax.jit(lambda m, d: infer.infer_arrays(
          static.space, static.infer, dyn["infer"], m, d.train.features_TxF[task], key,
          d.train.enc_AxE, d.table.evaluated_TxA[task])[2]), chosen, data),
  }
  for name, seconds in parts.items():
    print(f"{name:>22}: {seconds:7.2f}s", flush=True)
  print(f"(training steps: {int(report.steps)})")
  print(f"simulation_s={median_seconds(simulate.simulate_jit, static, dyn, data, task):.2f}")


if __name__ == "__main__":
  main()
