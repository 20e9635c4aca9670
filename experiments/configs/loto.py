"""Leave-one-task-out evaluation of tarch against the baselines.

Run:
  python -m experiments.loto --benchmark=nasbench_graph --workdir=/tmp/loto
  python -m experiments.loto --data_dir=DIR --workdir=/tmp/loto        # any meta-dataset
  python -m experiments.loto --config=experiments/configs/loto.py:tiny ...  # seconds, for tests
  python -m experiments.loto --config=experiments/configs/loto.py:cost ...  # + cost-aware fronts

Cost: the default on NAS-Bench-Graph (9 folds) takes about a minute on 2 CPU cores; see
BUILD_NOTES.md for measured times and the quality it reaches (mean normalised regret of `tarch`
below best_on_average, knn and random_10).

The defaults of each group live in one place, the library's dataclasses (`ValueNetConfig`,
`TrainConfig`, `InferConfig`, each field commented there); this file only overrides them.
"""

import dataclasses

import ml_collections

from tarch.cost_model import CostConfig
from tarch.infer import DEFAULT_COST_WEIGHTS, InferConfig
from tarch.meta_train import TrainConfig
from tarch.value_net import ValueNetConfig

# Dataclass fields that are not settings of their own: derived from the search space by the
# library, or (the training seed) from the config's top-level `seed`.
_DERIVED = {"encoding_dim", "numeric_dims", "seed"}


def group(dataclass_type, **overrides) -> ml_collections.ConfigDict:
  fields = {f.name: f.default for f in dataclasses.fields(dataclass_type)
            if f.name not in _DERIVED}
  unknown = set(overrides) - set(fields)
  if unknown:
    raise ValueError(f"{dataclass_type.__name__} has no fields {sorted(unknown)}")
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def comma_values(flag: str, text, cast=float) -> tuple:
  """The values of a comma-separated flag (`cast` each; empty items skipped), or a ValueError
  naming `flag`."""
  try:
    return tuple(cast(v) for v in str(text).split(",") if v.strip())
  except ValueError:
    kind = "integers" if cast is int else "numbers"
    raise ValueError(f"{flag}: expected comma-separated {kind}, got {text!r}") from None


def library_configs(config: ml_collections.ConfigDict
                    ) -> tuple[ValueNetConfig, TrainConfig, InferConfig]:
  """The typed, frozen library configs of a LOTO config (the jit-facing boundary)."""
  net = config.value_net.to_dict()
  net = ValueNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in net.items()})
  train = config.train.to_dict()
  for name in ("task_effect_scales", "interaction_scales"):
    train[name] = tuple(train[name])
  # A few-shot config has `seeds` (each simulation's seed replaces this one) instead of `seed`.
  seed = config.seed if "seed" in config else 0
  return (net, TrainConfig(**train, seed=seed), InferConfig(**config.infer.to_dict()))


def cost_config(config: ml_collections.ConfigDict) -> CostConfig:
  """The cost model's typed config."""
  cost = config.cost.to_dict()
  cost["hidden"], cost["task_weights"] = tuple(cost["hidden"]), tuple(cost["task_weights"])
  return CostConfig(**cost)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The LOTO config. `variant`: comma-separated, "tiny" shrinks everything for smoke tests,
  "cost" turns on the cost-aware evaluation at the default grid of weights."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # seeds the value-network training and the ascent of every fold
  # Folds per compiled, vmapped call, at most (balanced chunks; a multiple of the device count);
  # 0: `tarch.sweep.default_chunk_size` (3 per CPU device, 16 per accelerator). Each finished
  # chunk is stored, so a killed run loses at most one chunk.
  config.chunk_size = 0
  config.value_net = group(ValueNetConfig)
  config.train = group(TrainConfig)
  config.infer = group(InferConfig)
  # Cost-aware evaluation (`tarch.pareto`): trade-off weights lambda of the predicted log cost;
  # empty: off. The `cost` variant sets `tarch.infer.DEFAULT_COST_WEIGHTS`.
  config.cost_weights = ()
  config.cost = group(CostConfig)
  variants = set(variant.split(",")) - {""}
  unknown = variants - {"tiny", "cost"}
  if unknown:
    raise ValueError(f"unknown config variant {sorted(unknown)}; valid: '' (default), 'tiny', "
                     f"'cost', or both comma-separated")
  if "cost" in variants:
    config.cost_weights = DEFAULT_COST_WEIGHTS
  if "tiny" in variants:
    config.value_net = group(ValueNetConfig, interaction_hidden=(16,), task_hidden=(8,))
    config.train = group(TrainConfig, ensemble_size=2, num_steps=40, eval_every=20,
                          batch_size=32, eval_size=64)
    config.infer = group(InferConfig, num_restarts=8, num_steps=20)
    config.cost = group(CostConfig, hidden=(16,), num_steps=50, batch_size=64, members=2)
  return config
