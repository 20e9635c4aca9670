"""Sweep config: the LOTO config plus what to sweep.

  python -m experiments.sweep --benchmark=nasbench_graph --workdir=/tmp/sweep \
      --config.sweep.seeds=0,1,2 --config.sweep.learning_rate=1e-3,3e-3

Every `sweep` field is a comma-separated list of values; an empty one is not swept (the base
value of the LOTO config is used). `seeds` are the seeds of each held-out task's simulation; the
others are the dynamic hyperparameters of `tarch.sweep.SWEEPABLE`: V's training
(`learning_rate`, `weight_decay`, `meta_feature_dropout`, `interaction_dropout`,
`top_quantile`, `top_weight`) and the ascent, prefixed `infer_` (`infer_learning_rate`,
`infer_support_weight`, ...). Static settings (network layout, ensemble size, step counts)
are set as in LOTO, e.g. `--config.train.ensemble_size=4`, and are one compiled program.
"""

import ml_collections

from experiments.configs import loto
from tarch import sweep


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The sweep config; `variant` "tiny" shrinks the LOTO part for smoke tests."""
  config = loto.get_config(variant)
  config.sweep = ml_collections.ConfigDict({"seeds": "0"})
  for name in sweep.SWEEPABLE:
    config.sweep[name] = ""
  return config
