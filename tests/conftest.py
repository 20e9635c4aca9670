"""Shared fixtures: small synthetic meta-datasets (see tarch.synthetic)."""

import pytest

from tarch import runs, synthetic


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
