"""Wall time of the full NAS-Bench-Graph LOTO run, as a user runs it (fresh process and workdir).

  python benchmarks/loto_wall.py [--seeds 0,1,2]

Each seed runs `python -m experiments.loto --benchmark=nasbench_graph` in a new process and a new
workdir (so conversion, loading and compilation are included) with a different `--config.seed`,
then prints the median wall time and, per seed, the mean normalised regret of every method, so
the same command also shows how much the result moves with the seed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", default="0,1,2", help="one run per seed")
  args = parser.parse_args()
  walls, regrets = [], {}
  for seed in [int(s) for s in args.seeds.split(",")]:
    with tempfile.TemporaryDirectory() as workdir:
      start = time.perf_counter()
      subprocess.run(
          [sys.executable, "-m", "experiments.loto", "--benchmark=nasbench_graph",
           f"--workdir={workdir}", f"--config.seed={seed}"],
          cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
      walls.append(time.perf_counter() - start)
      with open(os.path.join(workdir, "loto_summary.json")) as f:
        summary = json.load(f)["methods"]
    for method, stats in summary.items():
      regrets.setdefault(method, []).append(stats["mean_normalized_regret"])
    print(f"seed {seed}: {walls[-1]:.1f}s, tarch {summary['tarch']['mean_normalized_regret']:.3f}",
          flush=True)
  print(f"\nwall time: median {np.median(walls):.1f}s over {len(walls)} runs "
        f"(min {min(walls):.1f}s, max {max(walls):.1f}s)")
  print(f"{'method':18s} " + " ".join(f"seed{s:>2}" for s in args.seeds.split(",")) +
        "    mean    std")
  for method, values in sorted(regrets.items(), key=lambda kv: np.mean(kv[1])):
    print(f"{method:18s} " + " ".join(f"{v:6.3f}" for v in values) +
          f"  {np.mean(values):6.3f} {np.std(values):6.3f}")


if __name__ == "__main__":
  main()
