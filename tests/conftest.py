"""Shared fixtures: small synthetic meta-datasets (see tarch.synthetic)."""

import jax
import pytest

from tarch import runs, synthetic


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
  """Each test module starts without the compiled programs of the ones before it: the whole
  suite in one process otherwise accumulates them until XLA's CPU compiler crashes (a
  segmentation fault compiling in tests/test_value_net.py, which passes on its own)."""
  yield
  jax.clear_caches()


@pytest.fixture(scope="session")
def synthetic_frames():
  return synthetic.make_frames(num_tasks=6, archs_per_task=48, relatedness=0.5, seed=0)


@pytest.fixture(scope="session")
def synthetic_ds(synthetic_frames):
  space, runs_df, tasks_df = synthetic_frames
  return runs.from_frames(space, runs_df, tasks_df)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory, synthetic_frames):
  space, runs_df, tasks_df = synthetic_frames
  path = tmp_path_factory.mktemp("synthetic_meta_dataset")
  runs.write_meta_dataset(path, space, runs_df, tasks_df, runs_format="csv")
  return str(path)


@pytest.fixture
def tiny_offline_config():
  """A factory of offline configs that train 3 tasks x 8 architectures in seconds."""
  from experiments.configs.offline import get_config

  def make(**child_overrides):
    config = get_config("small")
    config.tasks.num_tasks = 3
    config.num_architectures = 8
    config.num_seeds = 1
    config.batch_models = 8
    config.child.num_steps = 20
    config.child.max_width = 16
    config.child.update(child_overrides)
    return config

  return make
