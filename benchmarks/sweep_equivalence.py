"""Does a sweep sharded over 8 devices give what it gives on one? (CPU devices stand in.)

  python benchmarks/sweep_equivalence.py [--data_dir DIR] [--config tiny] [--devices 8]

Runs the same small sweep (2 held-out tasks x 2 seeds x 2 learning rates of V) twice, each in a
fresh process: once with `XLA_FLAGS=--xla_force_host_platform_device_count=N` (the batch axis
sharded over N devices) and once with one device, and compares every simulation's picks
(exactly) and regrets (to float tolerance). Without --data_dir it uses a synthetic
meta-dataset. The last line is `sharded_matches_single=true` or `=false`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(args) -> None:
  """Runs the sweep in this process and writes picks and regrets as JSON."""
  import jax

  from experiments.configs.loto import get_config, library_configs
  from tarch import runs, simulate, sweep, synthetic

  if args.data_dir:
    ds = runs.load_meta_dataset(args.data_dir)
  else:
    ds = runs.from_frames(*synthetic.make_frames(num_tasks=6, archs_per_task=48,
                                                 relatedness=0.5, seed=0))
  net, train, infer_config = library_configs(get_config(args.config))
  static, _ = simulate.split(ds.space, net, train, infer_config)
  spec = sweep.Spec(tasks=(0, 1), seeds=(0, 1), grid=(("learning_rate", (1e-3, 3e-3)),))
  with tempfile.TemporaryDirectory() as store:
    outcomes = sweep.run(ds, static, train, infer_config, spec, store, chunk_size=8,
                         progress=None)
  with open(args.out, "w") as f:
    json.dump({"devices": jax.device_count(),
               "picks": [o.result.pick_K.tolist() for o in outcomes],
               "regrets": [o.result.regret_K.tolist() for o in outcomes]}, f)


def _run(args, devices: int, out: str) -> dict:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  cmd = [sys.executable, os.path.abspath(__file__), "--child", f"--out={out}",
         f"--config={args.config}"] + ([f"--data_dir={args.data_dir}"] if args.data_dir else [])
  subprocess.run(cmd, cwd=REPO, env=env, check=True)
  with open(out) as f:
    return json.load(f)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--config", default="tiny", help="variant of experiments/configs/loto.py")
  parser.add_argument("--devices", type=int, default=8)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    _child(args)
    return
  with tempfile.TemporaryDirectory() as tmp:
    sharded = _run(args, args.devices, os.path.join(tmp, "sharded.json"))
    single = _run(args, 1, os.path.join(tmp, "single.json"))
  picks_equal = sharded["picks"] == single["picks"]
  diff = float(np.max(np.abs(np.array(sharded["regrets"]) - np.array(single["regrets"]))))
  print(f"{len(single['picks'])} simulations on {sharded['devices']} devices vs "
        f"{single['devices']}: picks equal {picks_equal}, max regret difference {diff:.2e}")
  print(f"sharded_matches_single={'true' if picks_equal and diff <= 1e-5 else 'false'}")


if __name__ == "__main__":
  sys.path.insert(0, REPO)
  main()
