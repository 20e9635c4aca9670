"""Few-shot search config: the LOTO config plus the search's budget, seeds and refinement.

  python -m experiments.fewshot --benchmark=nasbench_graph --workdir=/tmp/fewshot
  python -m experiments.fewshot --data_dir=DIR --workdir=/tmp/fewshot --config.seeds=0,1,2

Each held-out task's model is trained as in LOTO (`value_net`, `train`, `infer` as there);
`budget` is the number of trainings each method gets on the held-out task, `seeds` a
comma-separated list (one simulation per held-out task and seed, all vmapped together), and
`refine` the settings of `tarch.refine.RefineConfig` (defaults there).
"""

import ml_collections

from experiments.configs import loto
from tarch.refine import RefineConfig


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The few-shot config; `variant` "tiny" shrinks the LOTO part and the budget for tests."""
  config = loto.get_config(variant)
  del config.seed  # `seeds` instead
  config.seeds = "0"
  config.budget = 20
  config.refine = loto.group(RefineConfig)
  if variant == "tiny":
    config.budget = 6
  return config


def refine_config(config: ml_collections.ConfigDict) -> RefineConfig:
  """The typed `RefineConfig` of a few-shot config."""
  return RefineConfig(**config.refine.to_dict())
