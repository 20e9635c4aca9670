"""Vmapped sweep vs a sequential loop of the same task simulations, side by side.

  python benchmarks/sweep_speed.py [--seeds 0,1,2] [--config ''] [--chunk_size 0]
      [--compare_chunk_size N,M,...]

Runs every NAS-Bench-Graph leave-one-task-out fold for each seed (9 folds x 3 seeds = 27
simulations by default) twice in one process: as a sequential loop (`simulate.simulate_jit`
called once per simulation: one compiled program, reused) and as one `tarch.sweep` (chunks of
at most `--chunk_size` simulations, default what the experiment binaries use,
`sweep.default_chunk_size`; `jax.vmap`ped and sharded over the local devices), and with
`--compare_chunk_size N,M` once more in chunks of N, of M, ..., side by side. All include
their compilation; all give the same picks (checked). The last line is
`vmapped_vs_loop_speedup=X` (loop time / sweep time, chunks of `--chunk_size`).
"""

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs.loto import get_config, library_configs
from tarch import mesh as mesh_lib
from tarch import runs, simulate, sweep
from tarch.adapters import nasbench_graph


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--config", default="", help="variant of experiments/configs/loto.py")
  parser.add_argument("--chunk_size", type=int, default=0,
                      help="0: sweep.default_chunk_size, as the experiment binaries")
  parser.add_argument("--compare_chunk_size", default="",
                      help="comma-separated chunk sizes to time the sweep in as well")
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    ds = runs.load_meta_dataset(nasbench_graph.convert(tmp))
  net, train, infer_config = library_configs(get_config(args.config))
  static, _ = simulate.split(ds.space, net, train, infer_config)
  spec = sweep.Spec(tasks=tuple(range(ds.num_tasks)),
                    seeds=tuple(int(s) for s in args.seeds.split(",")))
  sims = spec.simulations()
  print(f"{len(sims)} simulations ({ds.num_tasks} folds x {len(spec.seeds)} seeds) on "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s)", flush=True)

  start = time.perf_counter()
  data = simulate.Data.build(ds, train.target)
  loop_picks, steps = [], []
  for config, seed, task in sims:
    tc, ic = sweep.point_configs(train, infer_config, config, seed)
    _, dyn = simulate.split(ds.space, net, tc, ic)
    result = jax.device_get(simulate.simulate_jit(static, dyn, data, jnp.int32(task)))
    loop_picks.append(result.pick_K)
    steps.append(int(result.train_steps))
  loop = time.perf_counter() - start
  print(f"loop:    {loop:7.1f}s  ({len(sims) / loop:.3f} simulations/s; training steps per "
        f"simulation {min(steps)}-{max(steps)}, mean {np.mean(steps):.0f})", flush=True)

  def timed_sweep(chunk_size):
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as store:
      outcomes = sweep.run(ds, static, train, infer_config, spec, store, chunk_size=chunk_size,
                           progress=None)
    seconds = time.perf_counter() - start
    same = all((o.result.pick_K == p).all() for o, p in zip(outcomes, loop_picks))
    print(f"vmapped, chunks of {chunk_size}: {seconds:7.1f}s  ({len(sims) / seconds:.3f} "
          f"simulations/s), same picks: {same}, speedup over the loop {loop / seconds:.2f}",
          flush=True)
    return seconds

  vmapped = timed_sweep(args.chunk_size or sweep.default_chunk_size(mesh_lib.data_mesh()))
  for size in filter(None, args.compare_chunk_size.split(",")):
    timed_sweep(int(size))
  print(f"vmapped_vs_loop_speedup={loop / vmapped:.2f}")


if __name__ == "__main__":
  main()
