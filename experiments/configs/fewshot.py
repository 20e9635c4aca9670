"""Few-shot search config: the LOTO config plus the search's budget, seeds and refinement.

  python -m experiments.fewshot --benchmark=nasbench_graph --workdir=/tmp/fewshot
  python -m experiments.fewshot --data_dir=DIR --workdir=/tmp/fewshot --config.seeds=0,1,2

Each held-out task's model is trained as in LOTO (`value_net`, `train`, `infer` as there);
`budget` is the number of trainings each method gets on the held-out task, `seeds` a
comma-separated list (one simulation per held-out task and seed, all vmapped together), and
`refine` the settings of `tarch.refine.RefineConfig` (defaults there).

`refine_grid` compares other refinement settings at the cost of one fold: each field (a dynamic
field of `RefineConfig`) is a comma-separated list of values, empty for none, and every
combination of the listed values (the other fields as in `refine`) is searched as one more
method, `tarch[power=2,prior_strength=3]`, on the same fold as `tarch`:

  python -m experiments.fewshot --benchmark=nasbench_graph --workdir=/tmp/fewshot \
      --config.seeds=0,1,2 --config.refine_grid.prior_strength=0.5,3
"""

import dataclasses
import itertools

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
  config.refine_grid = ml_collections.ConfigDict({name: "" for name in RefineConfig.DYNAMIC})
  if variant == "tiny":
    config.budget = 6
  return config


def refine_config(config: ml_collections.ConfigDict) -> RefineConfig:
  """The typed `RefineConfig` of a few-shot config."""
  return RefineConfig(**config.refine.to_dict())


def refine_variants(config: ml_collections.ConfigDict) -> list[tuple[str, RefineConfig]]:
  """(method name, `RefineConfig`) of every combination of `refine_grid`'s values."""
  unknown = sorted(set(config.refine_grid.keys()) - set(RefineConfig.DYNAMIC))
  if unknown:
    raise ValueError(f"--config.refine_grid: cannot vary {unknown}; variable: "
                     f"{', '.join(RefineConfig.DYNAMIC)}")
  grid = []
  for name in RefineConfig.DYNAMIC:
    text = config.refine_grid[name]
    values = loto.comma_values(f"--config.refine_grid.{name}", text)
    if len(set(values)) != len(values):
      raise ValueError(f"--config.refine_grid.{name}: a value is listed twice in {text!r}")
    if values:
      grid.append((name, values))
  if not grid:
    return []
  base = refine_config(config)
  variants = []
  for values in itertools.product(*[v for _, v in grid]):
    point = dict(zip([n for n, _ in grid], values))
    label = ",".join(f"{n}={v:g}" for n, v in point.items())
    try:
      variants.append((f"tarch[{label}]", dataclasses.replace(base, **point)))
    except ValueError as e:
      raise ValueError(f"--config.refine_grid: {label}: {e}") from None
  return variants
