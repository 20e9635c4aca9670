"""Config of the offline phase (`experiments.generate`): tasks, architectures, child training.

  --config=experiments/configs/offline.py          the default: 48 tasks x 200 architectures x 2 seeds
  --config=experiments/configs/offline.py:small    6 tasks x 32 architectures x 2 seeds, short training
  --config=experiments/configs/offline.py:tfds     TFDS image tasks (downloads on first use)

The child-model family and its training budget default to `tarch.child.ChildConfig` (each field
commented there); this file only overrides them.
"""

import dataclasses

import ml_collections

from tarch import tasks
from tarch.child import ChildConfig


def child_config(config: ml_collections.ConfigDict) -> ChildConfig:
  """The typed, frozen `ChildConfig` of an offline config (the jit-facing boundary)."""
  fields = config.child.to_dict()
  return ChildConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _child(**overrides) -> ml_collections.ConfigDict:
  fields = {f.name: f.default for f in dataclasses.fields(ChildConfig)}
  unknown = set(overrides) - set(fields)
  if unknown:
    raise ValueError(f"ChildConfig has no fields {sorted(unknown)}")
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The offline-phase config; `variant` is "" (default), "small" or "tfds"."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # seeds the tasks' splits, the architecture sample and every model's training
  config.tasks = ml_collections.ConfigDict({
      "source": "offline",  # "offline" (data bundled with pip packages) or "tfds"
      "num_tasks": 48,
      "offline_sources": tasks.DEFAULT_BUNDLED,  # with source "offline"; see tasks.BUNDLED
      "tfds_datasets": ("mnist", "fashion_mnist"),  # with source "tfds"
      "tfds_max_examples": 3000,  # training examples read per TFDS dataset
      "tfds_pool": 2,  # average-pooling factor of the images
      "tfds_data_dir": "",  # TFDS data_dir ("" = TFDS's default)
  })
  config.num_architectures = 200  # sampled once; every task trains all of them
  config.num_seeds = 2  # trainings per (task, architecture); the runs table averages seeds
  config.batch_models = 256  # models per compiled program (the vmapped batch)
  config.child = _child()
  if variant == "small":
    config.tasks.num_tasks = 6
    config.num_architectures = 32
    config.batch_models = 32
    config.child = _child(num_steps=60, max_width=32)
  elif variant == "tfds":
    config.tasks.source = "tfds"
    config.tasks.num_tasks = 40
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; valid: '', 'small', 'tfds'")
  return config
