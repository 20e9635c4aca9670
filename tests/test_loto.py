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
from tarch import evaluate, sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def batches(monkeypatch):
  """The held-out tasks of every compiled sweep call, in order."""
  calls = []
  real = sweep._BATCH

  def counting(static, dyn, data, task_N):
    calls.append(sorted(set(int(t) for t in task_N)))
    return real(static, dyn, data, task_N)

  monkeypatch.setattr(sweep, "_BATCH", counting)
  return calls


def test_loto_end_to_end_and_resume(tmp_path, synthetic_dir, batches):
  workdir = str(tmp_path / "run")
  config = get_config("tiny")
  config.chunk_size = 2
  summary = loto.run(config, workdir, data_dir=synthetic_dir)
  assert batches == [[0, 1], [2, 3], [4, 5]]
  assert set(summary["methods"]) == set(evaluate.METHODS)
  for stats in summary["methods"].values():
    assert set(stats) == {"mean_normalized_regret", "mean_percentile", "num_tasks"}
    assert stats["num_tasks"] == 6
  assert summary["methods"]["oracle"]["mean_normalized_regret"] == 0.0
  with open(os.path.join(workdir, "loto_summary.json")) as f:
    assert json.load(f) == summary
  results = pd.read_csv(os.path.join(workdir, "loto_results.csv"))
  assert len(results) == 6 * len(evaluate.METHODS)
  assert list(results.columns) == evaluate.RESULT_COLUMNS
  assert os.path.getsize(os.path.join(workdir, "loto_regret.png")) > 1000

  # A rerun reuses every finished fold; a removed chunk is recomputed, and only that one.
  folds = os.path.join(workdir, "folds")
  assert len(os.listdir(folds)) == 3
  batches.clear()
  assert loto.run(config, workdir, data_dir=synthetic_dir) == summary
  assert batches == []
  with open(os.path.join(folds, sorted(os.listdir(folds))[0])) as f:
    removed = json.load(f)["simulations"]
  os.remove(os.path.join(folds, sorted(os.listdir(folds))[0]))
  again = loto.run(config, workdir, data_dir=synthetic_dir)
  assert len(batches) == 1 and len(batches[0]) == len(removed)
  assert again == summary  # Same seeds: the recomputed folds are identical.

  # A changed dynamic setting (the seed) is another simulation; the stored ones stay valid.
  config.seed = 1
  batches.clear()
  loto.run(config, workdir, data_dir=synthetic_dir, tasks=["task_00"])
  assert batches == [[0]]


def test_fold_store_rejects_results_of_other_code(tmp_path, synthetic_dir, batches,
                                                  monkeypatch):
  """The store's fingerprint includes the package's source: other code, other results."""
  from tarch import fingerprint
  config = get_config("tiny")
  workdir = str(tmp_path / "run")
  loto.run(config, workdir, data_dir=synthetic_dir, tasks=["task_01"])
  monkeypatch.setattr(fingerprint, "source_digest", lambda package="tarch": "edited")
  batches.clear()
  loto.run(config, workdir, data_dir=synthetic_dir, tasks=["task_01"])
  assert batches == [[1]]


def test_loto_resumes_after_sigkill(tmp_path, synthetic_dir):
  workdir = tmp_path / "killed"
  cmd = [sys.executable, "-m", "experiments.loto", "--config=experiments/configs/loto.py:tiny",
         "--config.chunk_size=1", f"--data_dir={synthetic_dir}", f"--workdir={workdir}"]
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
  assert "reusing" in done.stdout
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
