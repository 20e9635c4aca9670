"""Sweeps: one compiled program, sharded equals single-device, outputs, resume, spec errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments import sweep as sweep_binary
from experiments.configs import sweep as sweep_config
from experiments.configs.loto import get_config, library_configs
from tarch import evaluate, simulate, sweep
from tarch import mesh as mesh_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _static(ds, config):
  net, train, infer_config = library_configs(config)
  return simulate.split(ds.space, net, train, infer_config)[0], train, infer_config


def test_a_sweep_compiles_the_simulation_once(tmp_path, synthetic_ds):
  """3 seeds x 2 learning rates x every held-out task, in equal chunks: one compilation."""
  static, train, infer_config = _static(synthetic_ds, get_config("tiny"))
  spec = sweep.Spec(tasks=tuple(range(6)), seeds=(0, 1, 2),
                    grid=(("learning_rate", (1e-3, 3e-3)),))
  before = sweep.compiled_programs()
  outcomes = sweep.run(synthetic_ds, static, train, infer_config, spec, str(tmp_path),
                       chunk_size=12, progress=None)
  assert sweep.compiled_programs() == before + 1
  assert [(o.config, o.seed, o.task) for o in outcomes] == spec.simulations()
  assert len(os.listdir(tmp_path)) == 3
  by_key = {(o.config["learning_rate"], o.seed, o.task): o.result for o in outcomes}
  # Seeds and learning rates are honoured: they change what V learns.
  assert len({float(r.best_val_loss) for r in by_key.values()}) > 6
  # The oracle is the pool's best; regrets are non-negative and percentiles in (0, 1].
  for r in by_key.values():
    assert r.regret_K[simulate.METHODS.index("oracle")] == 0.0
    assert (r.regret_K >= 0).all() and ((r.percentile_K > 0) & (r.percentile_K <= 1)).all()


def test_simulation_scores_picks_as_the_metrics_module(synthetic_ds):
  """In-graph regret and percentile (float32, scores shifted per task) match tarch.metrics."""
  from tarch import metrics
  static, train, infer_config = _static(synthetic_ds, get_config("tiny"))
  _, dyn = simulate.split(synthetic_ds.space, *library_configs(get_config("tiny")))
  result = simulate.simulate_jit(static, dyn, simulate.Data.build(synthetic_ds, train.target),
                                 np.int32(3))
  rows = evaluate.fold_rows(synthetic_ds, 3, result)
  test_P = synthetic_ds.test_score_R[synthetic_ds.task_rows(3)]
  for row in rows:
    if row["method"] in simulate.METHODS:
      assert row["normalized_regret"] == pytest.approx(
          metrics.normalized_regret(row["test_score"], test_P), abs=1e-5)
      assert row["percentile"] == pytest.approx(metrics.percentile(row["test_score"], test_P))
  assert [r["method"] for r in rows] == list(evaluate.METHODS)


def test_sharded_sweep_matches_single_device():
  script = os.path.join(REPO, "benchmarks", "sweep_equivalence.py")
  done = subprocess.run([sys.executable, script, "--devices=4"], cwd=REPO, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.strip().splitlines()[-1] == "sharded_matches_single=true", done.stdout


def test_sweep_binary_outputs_and_resume(tmp_path, synthetic_dir, monkeypatch):
  config = sweep_config.get_config("tiny")
  config.sweep.seeds = "0,1"
  config.sweep.weight_decay = "1e-4,1e-2"
  workdir = str(tmp_path / "sweep")
  summary = sweep_binary.run(config, workdir, data_dir=synthetic_dir,
                             tasks=["task_00", "task_01", "task_02"])
  assert [c["config"] for c in summary["configs"]] == [{"weight_decay": 1e-4},
                                                        {"weight_decay": 1e-2}]
  for c in summary["configs"]:
    assert set(c["methods"]) == set(evaluate.METHODS)
    for stats in c["methods"].values():
      assert set(stats) == {"mean_normalized_regret", "se", "num_simulations"}
      assert stats["num_simulations"] == 6  # 3 tasks x 2 seeds
  with open(os.path.join(workdir, "sweep_summary.json")) as f:
    assert json.load(f) == summary
  results = pd.read_csv(os.path.join(workdir, "sweep_results.csv"))
  assert len(results) == 2 * 2 * 3 * len(evaluate.METHODS)
  assert {"weight_decay", "seed", "task", "method", "architecture", "test_score",
          "normalized_regret", "percentile"} <= set(results.columns)
  # se: standard error over tasks of the seed-averaged regret.
  sub = results[(results.weight_decay == 1e-4) & (results.method == "tarch")]
  per_task = sub.groupby("task").normalized_regret.mean()
  assert summary["configs"][0]["methods"]["tarch"]["se"] == pytest.approx(
      per_task.std(ddof=1) / np.sqrt(3))
  assert os.path.getsize(os.path.join(workdir, "sweep_regret.png")) > 1000

  # A larger sweep reuses what the smaller one finished: only the new seed runs.
  calls = []
  real = sweep._BATCH
  monkeypatch.setattr(sweep, "_BATCH", lambda *a: calls.append(len(a[3])) or real(*a))
  config.sweep.seeds = "0,1,2"
  sweep_binary.run(config, workdir, data_dir=synthetic_dir,
                   tasks=["task_00", "task_01", "task_02"])
  assert sum(calls) == 6  # 3 tasks x 2 weight decays, one new seed


def test_sweep_spec_errors_name_the_problem(synthetic_ds):
  with pytest.raises(ValueError, match=r"cannot sweep \['ensemble_size'\]"):
    sweep.Spec(tasks=(0,), grid=(("ensemble_size", (2.0, 4.0)),))
  with pytest.raises(ValueError, match="at least one"):
    sweep.Spec(tasks=(0,), seeds=())
  config = sweep_config.get_config("tiny")
  config.sweep.learning_rate = "1e-3,fast"
  with pytest.raises(ValueError, match="--config.sweep.learning_rate"):
    sweep_binary.spec_of(config, [0])
  config.sweep.learning_rate = "-1"
  static, train, infer_config = _static(synthetic_ds, get_config("tiny"))
  with pytest.raises(ValueError, match="learning_rate > 0"):
    sweep.run(synthetic_ds, static, train, infer_config, sweep_binary.spec_of(config, [0]),
              "/nonexistent/never/written", progress=None)


def test_dynamic_fields_keep_their_declared_types():
  """An integer written for a float field (a dropout of 0) is traced as float32; seeds as int32."""
  from tarch import hparams, meta_train
  static, dyn = hparams.split(meta_train.TrainConfig(meta_feature_dropout=0, seed=3))
  assert dyn["meta_feature_dropout"].dtype == np.float32 and dyn["seed"].dtype == np.int32
  assert static.seed == 0 and static.meta_feature_dropout == meta_train.TrainConfig().meta_feature_dropout
  with pytest.raises(ValueError, match="seed < 2"):
    meta_train.TrainConfig(seed=2**31)
  with pytest.raises(ValueError, match=r"repeated in \['seeds'\]"):
    sweep.Spec(tasks=(0, 1), seeds=(0, 0))


def test_multihost_sweep_splits_the_chunks_over_processes(tmp_path, synthetic_dir):
  """Two processes on this machine, connected by `jax.distributed`: each runs its share of the
  chunks and writes its own chunk file; process 0 writes the reports from both, running none
  again."""
  import socket
  with socket.socket() as s:  # a free port for the coordinator
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  workdir = tmp_path / "sweep"
  command = [sys.executable, "-m", "experiments.sweep",
             "--config=experiments/configs/sweep.py:tiny", f"--data_dir={synthetic_dir}",
             f"--workdir={workdir}", "--tasks=task_00,task_01", "--config.chunk_size=1",
             "--multihost", f"--coordinator_address=localhost:{port}", "--num_processes=2"]
  procs = [subprocess.Popen(command + [f"--process_id={i}"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
    assert "[1/2] simulations done" in out, out[-3000:]  # each ran one simulation of two
  assert len(os.listdir(workdir / "simulations")) == 2
  with open(workdir / "sweep_summary.json") as f:
    summary = json.load(f)
  assert summary["configs"][0]["methods"]["tarch"]["num_simulations"] == 2
  assert "wrote" in outs[0] and "wrote" not in outs[1]


def test_default_chunk_size_is_a_few_simulations_per_cpu_device():
  """chunk_size=0 means a few simulations per device on CPU, a multiple of the device count."""
  mesh = mesh_lib.data_mesh()
  size = sweep.default_chunk_size(mesh)
  assert size == sweep.CPU_CHUNK_PER_DEVICE * mesh_lib.num_shards(mesh)
  assert size % mesh_lib.num_shards(mesh) == 0
  assert sweep._chunks(27, size) == [range(i, i + 3) for i in range(0, 27, 3)]
