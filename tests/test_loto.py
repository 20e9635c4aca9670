"""End-to-end LOTO binary: smoke test, outputs, resume after a kill, bad flags."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from experiments import loto
from experiments.configs.loto import get_config
from tarch import evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_loto_end_to_end_and_resume(tmp_path, synthetic_dir, monkeypatch):
  workdir = str(tmp_path / "run")
  summary = loto.run(get_config("tiny"), workdir, data_dir=synthetic_dir)
  assert set(summary["methods"]) == set(evaluate.METHODS)
  for stats in summary["methods"].values():
    assert set(stats) == {"mean_normalized_regret", "mean_percentile", "num_tasks"}
    assert stats["num_tasks"] == 6
  with open(os.path.join(workdir, "loto_summary.json")) as f:
    assert json.load(f) == summary
  results = pd.read_csv(os.path.join(workdir, "loto_results.csv"))
  assert len(results) == 6 * len(evaluate.METHODS)
  assert {"task", "method", "architecture", "test_score", "normalized_regret",
          "percentile"} <= set(results.columns)
  assert os.path.getsize(os.path.join(workdir, "loto_regret.png")) > 1000

  # A rerun reuses every finished fold; a removed fold is recomputed, and only that one.
  calls = []
  real_run_fold = loto.run_fold
  monkeypatch.setattr(loto, "run_fold", lambda c, ds, t: calls.append(t) or real_run_fold(c, ds, t))
  os.remove(loto._fold_path(workdir, "task_03"))
  again = loto.run(get_config("tiny"), workdir, data_dir=synthetic_dir)
  assert calls == [3]
  assert again == summary  # Same seeds: the recomputed fold is identical.

  # A changed config invalidates the stored folds.
  config = get_config("tiny")
  config.seed = 1
  calls.clear()
  loto.run(config, workdir, data_dir=synthetic_dir, tasks=["task_00"])
  assert calls == [0]


def test_loto_resumes_after_sigkill(tmp_path, synthetic_dir):
  workdir = tmp_path / "killed"
  cmd = [sys.executable, "-m", "experiments.loto", "--config=experiments/configs/loto.py:tiny",
         f"--data_dir={synthetic_dir}", f"--workdir={workdir}"]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  folds = workdir / "folds"
  deadline = time.time() + 120
  while time.time() < deadline and not (folds.exists() and len(os.listdir(folds)) >= 2):
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  finished = {p for p in os.listdir(folds) if p.endswith(".json")}
  assert finished, "the run was killed before finishing any fold"
  assert not (workdir / "loto_summary.json").exists() or len(finished) == 6
  done = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "reused" in done.stdout
  results = pd.read_csv(workdir / "loto_results.csv")
  assert len(results) == 6 * len(evaluate.METHODS)
  assert not results.duplicated(["task", "method"]).any()


def test_loto_rejects_bad_arguments(tmp_path, synthetic_dir):
  with pytest.raises(ValueError, match="exactly one of --data_dir and --benchmark"):
    loto.run(get_config("tiny"), str(tmp_path), data_dir=synthetic_dir, benchmark="nasbench_graph")
  with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
    loto.run(get_config("tiny"), str(tmp_path), benchmark="nope")
  with pytest.raises(ValueError, match=r"unknown tasks \['missing'\]"):
    loto.run(get_config("tiny"), str(tmp_path), data_dir=synthetic_dir, tasks=["missing"])
  with pytest.raises(ValueError, match="unknown config variant"):
    get_config("huge")
