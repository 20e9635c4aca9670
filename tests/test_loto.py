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
  assert not os.path.exists(os.path.join(workdir, "loto_pareto.json"))  # cost-aware: off

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
  # A bound for a stuck run, not a speed target: on a busy 2-core machine the first folds
  # take minutes.
  deadline = time.time() + 600
  while (time.time() < deadline and proc.poll() is None
         and not (folds.exists() and len(os.listdir(folds)) >= 2)):
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


def test_loto_runs_on_any_task_name_and_degenerate_tasks(tmp_path, synthetic_frames, capsys):
  """Valid inputs always run: task names no file system would take as a file name, and tasks
  whose metrics are degenerate (one run, one architecture, one test score) give defined
  metrics and a note."""
  import numpy as np
  from tarch import runs as runs_lib
  space, runs_df, tasks_df = synthetic_frames
  names = {"task_00": "任务" * 30, "task_01": 'a/b:c*?"<|>..\\', "task_02": "x" * 300,
           "task_03": "single", "task_04": "flat"}
  runs_df = runs_df.assign(task=runs_df["task"].replace(names))
  tasks_df = tasks_df.assign(task=tasks_df["task"].replace(names))
  single = runs_df[runs_df["task"] == "single"].iloc[:1]
  runs_df = pd.concat([runs_df[runs_df["task"] != "single"], single])
  runs_df.loc[runs_df["task"] == "flat", ["score", "test_score"]] = 0.5
  data = tmp_path / "data"
  runs_lib.write_meta_dataset(data, space, runs_df, tasks_df, runs_format="csv")
  config = get_config("tiny")
  summary = loto.run(config, str(tmp_path / "run"), data_dir=str(data))
  out = capsys.readouterr().out
  assert "note: task 'single' evaluated one architecture only" in out
  assert "note: task 'flat': all 48 architectures have the same test score" in out
  assert summary["methods"]["tarch"]["num_tasks"] == 6
  results = pd.read_csv(tmp_path / "run" / "loto_results.csv", keep_default_na=False)
  assert set(results["task"]) == set(names.values()) | {"task_05"}
  assert np.isfinite(results["normalized_regret"].astype(float)).all()
  degenerate = results[results["task"].isin(["single", "flat"])]
  # random_k's rows are expectations: sums of probabilities, so 1 up to rounding.
  np.testing.assert_allclose(degenerate["normalized_regret"], 0, atol=1e-12)
  np.testing.assert_allclose(degenerate["percentile"], 1, rtol=1e-12)
