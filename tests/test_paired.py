"""benchmarks/paired.py: paired differences per file and pooled, on tables with known answers."""

import os
import subprocess
import sys

import pandas as pd

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*paths) -> str:
  return subprocess.run([sys.executable, os.path.join(_ROOT, "benchmarks", "paired.py"),
                         *map(str, paths)], capture_output=True, text=True, check=True,
                        cwd=_ROOT, env={**os.environ, "PYTHONPATH": _ROOT}).stdout


def test_paired_per_file_and_pooled(tmp_path):
  # File a: tarch beats boa by 0.2 on both tasks (seeds averaged: task y's seeds 0.1 / 0.3);
  # file b reuses a task name, which must count as another task: tarch is 0.4 behind there.
  a = pd.DataFrame({"task": ["x", "x", "y", "y", "y", "y"],
                    "method": ["tarch", "best_on_average"] * 3,
                    "seed": [0, 0, 0, 0, 1, 1],
                    "normalized_regret": [0.1, 0.3, 0.1, 0.2, 0.3, 0.6]})
  b = pd.DataFrame({"task": ["x", "x"], "method": ["tarch", "best_on_average"], "seed": [0, 0],
                    "normalized_regret": [0.5, 0.1]})
  a.to_csv(tmp_path / "a.csv", index=False)
  b.to_csv(tmp_path / "b.csv", index=False)
  out = _run(tmp_path / "a.csv", tmp_path / "b.csv").splitlines()
  assert "best_on_average  -0.200 +- 0.000" in out[2]
  assert out[-3].startswith("pooled over 2 files") and "(3 tasks)" in out[-3]
  # (-0.2, -0.2, +0.4): mean 0, standard deviation sqrt(0.12), over sqrt(3): 0.2.
  assert "best_on_average  +0.000 +- 0.200" in out[-1]


def test_other_setting_joins_as_method_at_other(tmp_path):
  # The same two tasks under another setting: tarch was 0.1 and 0.3 worse there.
  new = pd.DataFrame({"task": ["x", "x", "y", "y"], "method": ["tarch", "best_on_average"] * 2,
                      "seed": 0, "normalized_regret": [0.1, 0.3, 0.2, 0.2]})
  old = new.assign(normalized_regret=[0.2, 0.3, 0.5, 0.2])
  new.to_csv(tmp_path / "new.csv", index=False)
  old.to_csv(tmp_path / "old.csv", index=False)
  out = _run(tmp_path / "new.csv", "--other", tmp_path / "old.csv")
  # (-0.1, -0.3): mean -0.2, standard deviation sqrt(0.02), over sqrt(2): 0.1.
  rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
  assert rows["tarch@other"] == ["-0.200", "+-", "0.100"]
  assert rows["best_on_average@other"] == ["-0.100", "+-", "0.100"]
