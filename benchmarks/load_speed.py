"""Speed of `tarch.runs.load_meta_dataset` on NAS-Bench-Graph (9 tasks, 26,206 architectures,
211,669 runs), as runs.csv and as runs.parquet.

  python benchmarks/load_speed.py [--repeats 15] [--rounds 3] [--baseline_tree DIR]

Writes the benchmark in both formats to a temporary directory, then times loads in fresh
processes, `--rounds` times each with `--repeats` loads after one warm-up. With
`--baseline_tree` (a checkout of another commit, e.g. `git worktree add /tmp/base HEAD~3`) the
same loads run in that tree too, interleaved round by round with this one, so that both see the
same machine load; the ratio of medians is what to quote. Prints one line per tree and format
(median and quartiles in ms over all rounds) and, with a baseline, `ratio_csv=` and
`ratio_parquet=` (this tree / baseline).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_TIMER = """
import json, sys, time
from tarch import runs
path, repeats = sys.argv[1], int(sys.argv[2])
runs.load_meta_dataset(path)  # warm-up: imports, page cache
times = []
for _ in range(repeats):
  start = time.perf_counter()
  runs.load_meta_dataset(path)
  times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def _times(tree: str, path: str, repeats: int) -> list[float]:
  env = dict(os.environ, PYTHONPATH=tree, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _TIMER, path, str(repeats)], env=env, cwd=tree,
                       check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--baseline_tree", default=None)
  args = parser.parse_args()
  sys.path.insert(0, _HERE)
  from tarch import runs  # pylint: disable=g-import-not-at-top
  from tarch.adapters import nasbench_graph  # pylint: disable=g-import-not-at-top

  trees = {"this": _HERE}
  if args.baseline_tree:
    trees["baseline"] = os.path.abspath(args.baseline_tree)
  with tempfile.TemporaryDirectory() as tmp:
    frames = (nasbench_graph.space(), nasbench_graph.runs_frame(), nasbench_graph.task_features())
    paths = {}
    for fmt in ("csv", "parquet"):
      paths[fmt] = os.path.join(tmp, fmt)
      runs.write_meta_dataset(paths[fmt], *frames, runs_format=fmt)
    times = {(t, f): [] for t in trees for f in paths}
    for r in range(args.rounds):
      for fmt, path in paths.items():
        for tree_name, tree in trees.items():
          times[tree_name, fmt] += _times(tree, path, args.repeats)
      print(f"round {r + 1}/{args.rounds} done", flush=True)
  medians = {}
  for (tree_name, fmt), t in times.items():
    q25, q50, q75 = np.percentile(np.array(t) * 1e3, [25, 50, 75])
    medians[tree_name, fmt] = q50
    print(f"{tree_name:8s} {fmt:7s} median {q50:7.1f} ms  (quartiles {q25:.1f}-{q75:.1f}, "
          f"{len(t)} loads)")
  if "baseline" in trees:
    for fmt in paths:
      print(f"ratio_{fmt}={medians['this', fmt] / medians['baseline', fmt]:.3f}")


if __name__ == "__main__":
  main()
