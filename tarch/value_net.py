"""The value network V(meta_features, arch_encoding) -> predicted (per-task normalised) score.

V is the sum of an across-task *prior* that sees only the architecture and a task-conditioned
*interaction* term:

    V(m, a) = prior(h(a)) + <h(a), g(m)>,    h = MLP(a),   g = MLP(m)

The split is what lets tarch fall back gracefully when meta-features carry little signal (a handful
of training tasks, weakly related): the interaction is trained with meta-feature dropout and its
own weight decay, so with uninformative meta-features V shrinks toward the prior, which is a
smoothed "best on average". An ensemble of such networks (stacked parameters, one leading axis)
is averaged at prediction time.

Losses take a batch of (task, architecture) pairs and return `(loss, aux)`:
- "mse": regression on per-task normalised scores (the paper's choice);
- "pairwise": logistic loss on the order of two architectures of the same task (a ranking loss).

Shape letters: B batch, E encoding width, F meta-features, M ensemble members, N architectures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ValueNetConfig:
  """Architecture of V. Hashable: passed to jitted functions as a static argument."""

  arch_hidden: tuple[int, ...] = (128, 128)  # widths of the architecture trunk h(a)
  task_hidden: tuple[int, ...] = (32,)  # widths of the meta-feature trunk g(m) before the head
  use_meta_features: bool = True  # False: V is the prior alone (ablation)


class ValueNet(nn.Module):
  """V(mf_F, enc_E) -> scalar; batch dimensions broadcast (see module docstring)."""

  config: ValueNetConfig

  @nn.compact
  def __call__(self, mf_F: jax.Array, enc_E: jax.Array) -> jax.Array:
    h = enc_E
    for width in self.config.arch_hidden:
      h = nn.gelu(nn.Dense(width)(h))
    value = nn.Dense(1, name="prior")(h)[..., 0]
    if self.config.use_meta_features:
      g = mf_F
      for width in self.config.task_hidden:
        g = nn.gelu(nn.Dense(width)(g))
      # Zero-initialised so training starts from the prior and only departs from it when the
      # meta-features explain per-task differences.
      g = nn.Dense(h.shape[-1], kernel_init=nn.initializers.zeros, name="interaction")(g)
      value = value + jnp.sum(h * g, axis=-1) / jnp.sqrt(h.shape[-1])
    return value


def apply_ensemble(config: ValueNetConfig, params_M, mf_F: jax.Array, enc_NxE: jax.Array):
  """Predictions of every ensemble member: `[M, N]`."""
  net = ValueNet(config)
  return jax.vmap(lambda p: net.apply(p, mf_F, enc_NxE))(params_M)


def ensemble_value(config: ValueNetConfig, params_M, mf_F: jax.Array, enc_E: jax.Array):
  """Ensemble-mean value of one encoding (the objective that inference ascends): a scalar."""
  return apply_ensemble(config, params_M, mf_F, enc_E[None])[:, 0].mean()


def init_params(config: ValueNetConfig, key: jax.Array, num_features: int, enc_dim: int):
  """Parameters of one member."""
  return ValueNet(config).init(key, jnp.zeros((num_features,)), jnp.zeros((enc_dim,)))


# ------------------------------------------------------------------------------------------ losses


def mse_loss(config: ValueNetConfig, params, mf_BxF, enc_BxE, target_B, other_enc_BxE,
             other_target_B):
  """Squared error on normalised scores. The `other_*` pair members are used as extra samples."""
  net = ValueNet(config)
  pred = net.apply(params, mf_BxF, jnp.concatenate([enc_BxE, other_enc_BxE]).reshape(
      2, *enc_BxE.shape))
  err = pred - jnp.stack([target_B, other_target_B])
  loss = jnp.mean(err**2)
  return loss, {"loss": loss}


def pairwise_loss(config: ValueNetConfig, params, mf_BxF, enc_BxE, target_B, other_enc_BxE,
                  other_target_B):
  """Logistic loss on which of two architectures of the same task scores higher (ties skipped)."""
  net = ValueNet(config)
  diff = net.apply(params, mf_BxF, enc_BxE) - net.apply(params, mf_BxF, other_enc_BxE)
  sign = jnp.sign(target_B - other_target_B)
  weight = jnp.abs(sign)
  loss = jnp.sum(weight * jax.nn.softplus(-sign * diff)) / jnp.maximum(weight.sum(), 1.0)
  return loss, {"loss": loss}


LOSSES: dict[str, Callable] = {"mse": mse_loss, "pairwise": pairwise_loss}


def get_loss(name: str) -> Callable:
  """The loss function called `name`; ValueError names the valid ones."""
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; valid: {sorted(LOSSES)}")
  return LOSSES[name]
