"""benchmarks/headroom.py on a small table whose answers are known."""

import os
import subprocess
import sys

import jax
import numpy as np
import pandas as pd

from tarch import runs as runs_lib
from tarch.child import ChildConfig

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _headroom(data_dir) -> dict[str, float]:
  out = subprocess.run([sys.executable, os.path.join(_ROOT, "benchmarks", "headroom.py"),
                        f"--data_dir={data_dir}"], capture_output=True, text=True, check=True,
                       cwd=_ROOT, env={**os.environ, "PYTHONPATH": _ROOT})
  lines = out.stdout.splitlines()
  start = lines.index("mean normalised regret (lower is better):") + 1
  values = {}
  for line in lines[start:]:
    if line.startswith("mean Spearman"):
      break
    name, value = line.rsplit(maxsplit=1)
    values[name] = float(value)
  return values


def test_headroom_scores_known_tables(tmp_path):
  space = ChildConfig().space
  archs = space.decode_many(np.asarray(space.sample(jax.random.key(0), 12)))
  quality = np.arange(12) / 11.0  # architecture a is better than a - 1 on every task
  rows = []
  for t in range(5):
    for a, arch in enumerate(archs):
      for seed in range(2):
        # Seed 0 inflates the first six architectures' validation and test scores alike (shared
        # luck); seed 1 the last six, so a pick by one seed's validation is wrong on the other.
        luck = 1.0 if (a < 6) == (seed == 0) else 0.0
        score = quality[a] + luck
        rows.append({"task": f"t{t}", **arch, "seed": seed, "score": score, "test_score": score})
  tasks = pd.DataFrame({"task": [f"t{t}" for t in range(5)], "f": np.arange(5.0)})
  runs_lib.write_meta_dataset(tmp_path, space, pd.DataFrame(rows), tasks)

  values = _headroom(tmp_path)
  # Seed-averaged, validation equals test and every task agrees: picks by the table are perfect.
  assert values["best_on_average"] == 0.0
  assert values["validation_oracle"] == 0.0
  assert values["nearest_5"] == 0.0  # k is capped by the 4 other tasks
  assert 0.0 < values["random_10"] < 1.0
  # Within one run the luck shows in validation and test alike, so the oracle still picks the
  # best test score; judged on the other seed, its pick (the luckiest run) is a poor architecture.
  assert values["validation_oracle (one run)"] == 0.0
  # best_on_average's pick (architecture 11) is the best run of seed 1 and a median one of seed 0.
  assert values["best_on_average (one run)"] == 0.5
  assert values["validation_oracle (independent runs)"] > 0.5
