"""The value network V(meta_features, arch_encoding) -> predicted (per-task normalised) score.

V is built around what transfers between tasks. The effect of each choice on its own (which
operation, which learning-rate range) tends to carry over to a new task; interactions between
choices carry over on some meta-datasets (an MLP's learning rate and weight decay) and not on
others (NAS-Bench-Graph's operations); so V is

    V(m, a) = <w, phi(a)>  +  <G(m) - G(0), phi(a)>  +  <u, h(a)>
              main effects    task-dependent        interactions between choices
                              main effects          (shrunk by a held-out scale)

where phi(a) is the encoding with each numeric entry expanded into a smooth radial basis (so a
numeric choice can have an interior optimum), h(a) the last hidden layer of an MLP of the
encoding (the interaction features), and G a small MLP of the standardised meta-features (m = 0
is the mean training task, where the term vanishes). The last layers of G and of the interaction
MLP start at zero: training starts from the additive across-task prior and departs from it only
as far as the data (and early stopping on held-out tasks) supports; after training,
`tarch.meta_train` shrinks each of the two optional terms by a scale chosen on held-out tasks.
Meta-feature dropout in training (see `tarch.meta_train`) makes V with the mean meta-features
the across-task prior, a smoothed "best on average".

`task_interactions=True` lets G weigh h(a) as well, `<G(m) - G(0), [phi(a), h(a)]>`: a two-tower
product of a task embedding and learned architecture features, so which combination of choices
is best may itself depend on the task. It makes V alone better on every meta-dataset of the
suite, but the blend worse on NAS-Bench-Graph (BUILD_NOTES.md), so it is off by default.

An ensemble of such networks (stacked parameters, one leading axis) is averaged at prediction.

Losses take a batch of (task, architecture) pairs and return `(loss, aux)`:
- "mse": regression on per-task normalised scores (the paper's choice);
- "pairwise": logistic loss on the order of two architectures of the same task (a ranking loss).
Both take optional per-pair weights (`TrainConfig.top_weight` puts them on the top of a task).

Shape letters: B batch, E encoding width, D width of phi, F meta-features, M ensemble members,
N architectures.
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

  interaction_hidden: tuple[int, ...] = (64,)  # widths of the interaction MLP; () for none
  task_hidden: tuple[int, ...] = (32,)  # widths of the meta-feature MLP G before its head
  use_meta_features: bool = True  # False: no G term, V is the across-task prior (ablation)
  task_interactions: bool = False  # G also weighs the interaction MLP's last hidden units, so
  # that interactions between choices may depend on the task (a two-tower term)
  numeric_basis: int = 8  # radial basis functions per numeric encoding entry
  # Layout of the search space's encoding; set by `meta_train.fit` from the space:
  encoding_dim: int = 0  # E
  numeric_dims: tuple[int, ...] = ()  # entries of integer and float choices

  @property
  def feature_dim(self) -> int:
    """Width D of phi(a)."""
    return self.encoding_dim + len(self.numeric_dims) * (self.numeric_basis - 1)

  @property
  def embedding_dim(self) -> int:
    """Width of the task embedding G(m): D, plus the interaction MLP's last width with
    `task_interactions`."""
    extra = self.interaction_hidden[-1] if self.task_interactions and self.interaction_hidden else 0
    return self.feature_dim + extra


def features(config: ValueNetConfig, enc_E: jax.Array) -> jax.Array:
  """phi(a): the encoding with each numeric entry replaced by a radial basis: `[..., D]`."""
  if not config.numeric_dims:
    return enc_E
  numeric = jnp.asarray(config.numeric_dims)
  categorical = jnp.asarray(sorted(set(range(enc_E.shape[-1])) - set(config.numeric_dims)),
                            dtype=jnp.int32)
  centres = jnp.linspace(0.0, 1.0, config.numeric_basis)
  width = 1.0 / max(config.numeric_basis - 1, 1)
  u = enc_E[..., numeric, None]
  basis = jnp.exp(-0.5 * ((u - centres) / width)**2).reshape(*enc_E.shape[:-1], -1)
  return jnp.concatenate([enc_E[..., categorical], basis], axis=-1)


class ValueNet(nn.Module):
  """V(mf_F, enc_E) -> scalar; batch dimensions broadcast (see module docstring).

  `task_embedding(mf)` (the G term's weights) and `value(g, enc)` split the computation so that
  inference computes G once per task instead of at every ascent step.
  """

  config: ValueNetConfig

  def setup(self):
    self.main_effects = nn.Dense(1)
    if self.config.interaction_hidden:
      self.interaction_layers = [nn.Dense(w) for w in self.config.interaction_hidden]
      self.interactions = nn.Dense(1, kernel_init=nn.initializers.zeros)
    if self.config.use_meta_features:
      self.task_layers = [nn.Dense(w) for w in self.config.task_hidden]
      self.task_effects = nn.Dense(self.config.embedding_dim, kernel_init=nn.initializers.zeros)

  def task_embedding(self, mf_F: jax.Array) -> jax.Array:
    """G(m) - G(0): per-task weights on phi(a) (and, with `task_interactions`, on the
    interaction MLP's last hidden units), `[..., embedding_dim]` (zeros without meta-features).

    Subtracting G at the training mean (m = 0 after standardisation) makes V at the mean task,
    which meta-feature dropout trains, exactly the main effects: the across-task prior. Scaling
    this term toward 0 (`meta_train.scale_task_effects`) then moves V toward that prior.
    """
    if not self.config.use_meta_features:
      return jnp.zeros(mf_F.shape[:-1] + (self.config.embedding_dim,), mf_F.dtype)
    def g(x):
      for layer in self.task_layers:
        x = nn.gelu(layer(x))
      return self.task_effects(x)
    return g(mf_F) - g(jnp.zeros_like(mf_F))

  def value(self, g_D: jax.Array, enc_E: jax.Array) -> jax.Array:
    """V given the task embedding."""
    phi = features(self.config, enc_E)
    d = self.config.feature_dim
    value = self.main_effects(phi)[..., 0] + jnp.sum(phi * g_D[..., :d], axis=-1)
    if self.config.interaction_hidden:
      h = enc_E
      for layer in self.interaction_layers:
        h = nn.gelu(layer(h))
      value = value + self.interactions(h)[..., 0]
      if self.config.task_interactions:
        value = value + jnp.sum(h * g_D[..., d:], axis=-1)
    return value

  def __call__(self, mf_F: jax.Array, enc_E: jax.Array) -> jax.Array:
    return self.value(self.task_embedding(mf_F), enc_E)


def task_embeddings(config: ValueNetConfig, params_M, mf_F: jax.Array) -> jax.Array:
  """G(m) of every ensemble member: `[M, D]`."""
  net = ValueNet(config)
  return jax.vmap(lambda p: net.apply(p, mf_F, method=ValueNet.task_embedding))(params_M)


def apply_embedded(config: ValueNetConfig, params_M, g_MxD: jax.Array, enc_NxE: jax.Array):
  """Predictions of every member given its task embedding: `[M, N]`."""
  net = ValueNet(config)
  return jax.vmap(lambda p, g: net.apply(p, g, enc_NxE, method=ValueNet.value))(params_M, g_MxD)


def fuse_members(config: ValueNetConfig, params_M) -> dict:
  """The ensemble's weights rearranged for `apply_fused`: every member's main effects as one
  `[D, M]` matrix and its interaction MLPs side by side, so that all members are evaluated with
  a few wide matrix products instead of M small ones (what makes the ascent's many small steps
  fast)."""
  p = params_M["params"]
  fused = {"main_DxM": p["main_effects"]["kernel"][..., 0].T,
           "main_M": p["main_effects"]["bias"][:, 0]}
  if config.interaction_hidden:
    fused["hidden"] = [(p[f"interaction_layers_{i}"]["kernel"], p[f"interaction_layers_{i}"]["bias"])
                       for i in range(len(config.interaction_hidden))]
    fused["out_MxH"] = p["interactions"]["kernel"][..., 0]
    fused["out_M"] = p["interactions"]["bias"][:, 0]
  return fused


def apply_fused(config: ValueNetConfig, fused: dict, g_MxD: jax.Array, enc_NxE: jax.Array):
  """Predictions of every member given its task embedding, `[M, N]`: equal to
  `apply_embedded` on the params `fuse_members` was given."""
  phi_NxD = features(config, enc_NxE)
  d = config.feature_dim
  value_NxM = phi_NxD @ (fused["main_DxM"] + g_MxD[:, :d].T) + fused["main_M"]
  if config.interaction_hidden:
    (w_MxExH, b_MxH), *rest = fused["hidden"]
    m, e, h = w_MxExH.shape
    # First layer: one [N, E] x [E, M*H] product for all members.
    h_NxMxH = nn.gelu((enc_NxE @ w_MxExH.transpose(1, 0, 2).reshape(e, m * h)).reshape(
        -1, m, h) + b_MxH)
    for w, b in rest:
      h_NxMxH = nn.gelu(jnp.einsum("nmh,mhk->nmk", h_NxMxH, w) + b)
    out_MxH = fused["out_MxH"] + g_MxD[:, d:] if config.task_interactions else fused["out_MxH"]
    value_NxM = value_NxM + jnp.einsum("nmh,mh->nm", h_NxMxH, out_MxH) + fused["out_M"]
  return value_NxM.T


def lower_bound(values_MxN: jax.Array, pessimism: float) -> jax.Array:
  """Ensemble mean minus `pessimism` member standard deviations: `[N]`.

  Members hold out different training tasks, so their disagreement is a proxy for how much an
  architecture's value varies from task to task; a positive `pessimism` prefers architectures
  that are good for every member over ones a few members like a lot.
  """
  mean = values_MxN.mean(0)
  if isinstance(pessimism, (int, float)) and pessimism == 0:
    return mean  # A static 0: no spread term to compute.
  # The small constant keeps the gradient of the spread finite where members agree exactly
  # (a traced pessimism of 0 then contributes exactly 0, gradient included).
  return mean - pessimism * jnp.sqrt(values_MxN.var(0) + 1e-12)


def ensemble_value(config: ValueNetConfig, params_M, g_MxD: jax.Array, enc_E: jax.Array,
                   pessimism: float = 0.0) -> jax.Array:
  """`lower_bound` of one encoding given the members' task embeddings: a scalar.

  This is the objective that inference ascends.
  """
  return lower_bound(apply_embedded(config, params_M, g_MxD, enc_E[None]), pessimism)[0]


def init_params(config: ValueNetConfig, key: jax.Array, num_features: int, enc_dim: int):
  """Parameters of one member."""
  return ValueNet(config).init(key, jnp.zeros((num_features,)), jnp.zeros((enc_dim,)))


# ------------------------------------------------------------------------------------------ losses


def mse_loss(config: ValueNetConfig, params, mf_BxF, enc_BxE, target_B, other_enc_BxE,
             other_target_B, weight_B=None):
  """Squared error on normalised scores. The `other_*` pair members are used as extra samples;
  `weight_B` (default 1) weighs each pair."""
  net = ValueNet(config)
  pred = net.apply(params, mf_BxF, jnp.stack([enc_BxE, other_enc_BxE]))
  err = pred - jnp.stack([target_B, other_target_B])
  weight = jnp.ones_like(target_B) if weight_B is None else weight_B
  loss = jnp.sum(weight * err**2) / jnp.maximum(2 * weight.sum(), 1e-12)
  return loss, {"loss": loss}


def pairwise_loss(config: ValueNetConfig, params, mf_BxF, enc_BxE, target_B, other_enc_BxE,
                  other_target_B, weight_B=None):
  """Logistic loss on which of two architectures of the same task scores higher (ties skipped),
  each pair weighted by `weight_B` (default 1)."""
  net = ValueNet(config)
  diff = net.apply(params, mf_BxF, enc_BxE) - net.apply(params, mf_BxF, other_enc_BxE)
  sign = jnp.sign(target_B - other_target_B)
  weight = jnp.abs(sign) if weight_B is None else jnp.abs(sign) * weight_B
  # A weighted mean; the floor only matters for a batch of ties (numerator 0 as well).
  loss = jnp.sum(weight * jax.nn.softplus(-sign * diff)) / jnp.maximum(weight.sum(), 1e-12)
  return loss, {"loss": loss}


LOSSES: dict[str, Callable] = {"mse": mse_loss, "pairwise": pairwise_loss}


def get_loss(name: str) -> Callable:
  """The loss function called `name`; ValueError names the valid ones."""
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; valid: {sorted(LOSSES)}")
  return LOSSES[name]
