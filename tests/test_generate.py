"""The offline phase (binary and `tarch.generation`): deterministic, resumable after SIGKILL,
failures recorded, the same on any number of devices, stale plans refused."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pandas as pd
import pytest

from experiments import generate
from experiments.configs.offline import get_config
from tarch import child, fingerprint, generation
from tarch import mesh as mesh_lib
from tarch import runs as runs_lib
from tarch import tasks as tasks_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_same_seeds_same_runs_table(tmp_path, tiny_offline_config):
  _tiny = tiny_offline_config
  lines = []
  out_a = generate.run(_tiny(), str(tmp_path / "a"), progress=lines.append)
  out_b = generate.run(_tiny(), str(tmp_path / "b"), progress=lambda _: None)
  a = pd.read_parquet(os.path.join(out_a, "runs.parquet"))
  pd.testing.assert_frame_equal(a, pd.read_parquet(os.path.join(out_b, "runs.parquet")))
  assert len(a) == 3 * 8
  assert not a[["task", "num_layers", "width", "activation", "dropout", "learning_rate",
                "weight_decay", "seed"]].duplicated().any()
  assert np.isfinite(a["score"]).all() and (a["status"] == "ok").all()
  assert any("models/s" in line and "ETA" in line for line in lines)
  ds = runs_lib.load_meta_dataset(out_a)
  assert ds.num_tasks == 3 and ds.num_archs == 8
  # A finished run is not redone.
  lines.clear()
  generate.run(_tiny(), str(tmp_path / "a"), progress=lines.append)
  assert lines == [f"{out_a} is complete; nothing to train"]


def test_non_finite_loss_is_a_failed_run_with_its_reason(tmp_path, tiny_offline_config):
  _tiny = tiny_offline_config
  out = generate.run(_tiny(learning_rate=(1e20, 1e30)), str(tmp_path), progress=lambda _: None)
  runs = pd.read_parquet(os.path.join(out, "runs.parquet"))
  assert (runs["status"] == "failed").all()
  assert runs["failure"].str.fullmatch(r"non-finite training loss or parameters at step \d+").all()
  assert np.isfinite(runs["score"]).all() and np.isfinite(runs["test_score"]).all()
  assert runs["score"].between(0, 1).all()
  runs_lib.load_meta_dataset(out)


def test_runs_record_each_models_cost(tmp_path, tiny_offline_config):
  out = generate.run(tiny_offline_config(), str(tmp_path), progress=lambda _: None)
  runs = pd.read_parquet(os.path.join(out, "runs.parquet"))
  config = tiny_offline_config().child
  # Training FLOPs: forward plus backward (3 x the forward's 2 FLOPs per multiply-add) per example,
  # times the examples trained on.
  np.testing.assert_allclose(runs["cost"],
                             3 * runs["flops_per_example"] * config.batch_size * config.num_steps)
  assert (runs["params"] > 0).all() and (runs["flops_per_example"] > 0).all()
  assert runs_lib.load_meta_dataset(out).has_cost


def test_another_config_in_the_same_workdir_is_refused(tmp_path, tiny_offline_config):
  _tiny = tiny_offline_config
  generate.run(_tiny(), str(tmp_path), progress=lambda _: None)
  other = _tiny()
  other.seed = 1
  with pytest.raises(ValueError, match="another config"):
    generate.run(other, str(tmp_path), progress=lambda _: None)


def test_a_plan_of_other_source_code_is_refused(tmp_path, tiny_offline_config, monkeypatch):
  generate.run(tiny_offline_config(), str(tmp_path), progress=lambda _: None)
  monkeypatch.setattr(fingerprint, "source_digest", lambda package="tarch": "edited")
  with pytest.raises(ValueError, match="tarch source"):
    generate.run(tiny_offline_config(), str(tmp_path), progress=lambda _: None)


def test_failed_trainings_count_as_the_majority_class(tiny_offline_config):
  padded = tasks_lib.pad_tasks(generate.build_tasks(tiny_offline_config()))
  arch = {"num_layers": 1, "width": 8, "activation": "relu", "dropout": 0.0,
          "learning_rate": 1e30, "weight_decay": 1e-4}
  out = generation.train_on_task(child.ChildConfig(max_width=16, num_steps=10), padded, 0, [arch],
                                 2, jax.random.key(0), mesh=mesh_lib.data_mesh())
  floor_val, floor_test = tasks_lib.majority_accuracy(padded)
  assert out["failed"][0] == 2
  assert out["val"][0] == floor_val[0] and out["test"][0] == floor_test[0]


def test_one_and_four_devices_give_the_same_runs_table(tmp_path):
  """The binary on 1 and on 4 host devices: batches of 2 models are padded to 4, one per device."""
  flags = ["--config=experiments/configs/offline.py:small", "--config.tasks.num_tasks=2",
           "--config.tasks.offline_sources=('digits',)", "--config.num_architectures=3",
           "--config.num_seeds=1", "--config.batch_models=2", "--config.child.num_steps=5",
           "--config.child.max_layers=2", "--config.child.min_width=5",
           "--config.child.max_width=8"]
  procs = {}
  for n in (1, 4):  # both at once: each is mostly compilation
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags.strip())
    procs[n] = subprocess.Popen(
        [sys.executable, "-m", "experiments.generate", *flags, f"--workdir={tmp_path / str(n)}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  logs = {n: proc.communicate(timeout=600) for n, proc in procs.items()}
  for n, proc in procs.items():
    assert proc.returncode == 0, logs[n][1][-3000:]
  assert "on 4 cpu device(s)" in logs[4][0]
  assert "batch_models=2 is not a multiple of the 4 devices" in logs[4][1]
  one, four = (pd.read_parquet(tmp_path / str(n) / "meta_dataset" / "runs.parquet")
               for n in (1, 4))
  assert len(one) == 6 and (one["status"] == "ok").all()
  pd.testing.assert_frame_equal(one, four, check_exact=False, rtol=1e-5, atol=1e-5)


def test_sigkill_then_rerun_loses_and_duplicates_nothing(tmp_path, tiny_offline_config):
  """A generation of 18 batches of 2 models, killed after its first finished batch, then run to
  the end."""
  overrides = dict(num_architectures=6, batch_models=2, num_seeds=2)
  config = tiny_offline_config()
  config.update(overrides)
  reference = generate.run(config, str(tmp_path / "reference"), progress=lambda _: None)
  workdir = tmp_path / "killed"
  flags = [f"--config.{k}={v}" for k, v in overrides.items()] + [
      "--config.tasks.num_tasks=3", "--config.child.num_steps=20", "--config.child.max_width=16"]
  assert config.tasks.num_tasks == 3 and config.child.num_steps == 20  # the fixture's config
  command = [sys.executable, "-m", "experiments.generate",
             "--config=experiments/configs/offline.py:small", *flags, f"--workdir={workdir}"]
  batches = workdir / "generate" / "batches"
  proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and not list(batches.glob("*.parquet")):
    assert proc.poll() is None, "generate finished or crashed before it could be killed"
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  before = {p.name: p.read_bytes() for p in batches.glob("*.parquet")}
  assert before and not (workdir / "meta_dataset").exists()

  subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
  assert len(list(batches.glob("*.parquet"))) > len(before)  # the kill left work to resume
  for name, content in before.items():  # finished batches were kept, not trained again
    assert (batches / name).read_bytes() == content
  resumed = pd.read_parquet(workdir / "meta_dataset" / "runs.parquet")
  pd.testing.assert_frame_equal(resumed, pd.read_parquet(os.path.join(reference,
                                                                      "runs.parquet")))


def test_tfds_config_generates_from_mock_data(tmp_path, tiny_offline_config):
  import tensorflow_datasets as tfds
  config = tiny_offline_config()
  config.tasks.source = "tfds"
  config.tasks.tfds_datasets = ("mnist", "fashion_mnist")
  config.tasks.tfds_max_examples = 60
  with tfds.testing.mock_data(num_examples=80):
    out = generate.run(config, str(tmp_path), progress=lambda _: None)
  ds = runs_lib.load_meta_dataset(out)
  assert ds.num_tasks == 3 and {n.split("_k")[0] for n in ds.task_names} == {"mnist",
                                                                             "fashion_mnist"}


def test_unknown_task_source_is_named(tmp_path, tiny_offline_config):
  config = tiny_offline_config()
  config.tasks.source = "imagenet"
  with pytest.raises(ValueError, match="'imagenet'"):
    generate.run(config, str(tmp_path), progress=lambda _: None)


@pytest.mark.parametrize("bad", [{"max_layers": 1}, {"min_width": 8, "max_width": 8},
                                 {"max_dropout": 0.0}])
def test_a_one_value_choice_is_refused_before_any_training(bad):
  """The runs table could not be written after the trainings (a range of one value), so the
  plan refuses at once, naming the choice."""
  from tarch.space import SpaceError
  choice = {"max_layers": "num_layers", "min_width": "width", "max_dropout": "dropout"}
  name = choice[next(iter(bad))]
  with pytest.raises(SpaceError, match=rf"config\.child.*'{name}'"):
    generation.Plan(child.ChildConfig(**bad), [], num_architectures=2, num_seeds=1,
                    batch_models=2, seed=0)
