"""The cost model: an architecture's cost on a task (latency, parameters, training FLOPs), in logs.

Cost-aware inference (`tarch.infer(..., cost_weights=, max_cost=)`) trades V's predicted value
against the predicted cost of an architecture, so the cost must be predicted for architectures
and tasks the table never paired, and it must have gradients in the encoding for the ascent.
`CostModel` is a small MLP of the standardised meta-features and the encoding, regressed on the
log of the meta-dataset's `cost` column: costs span orders of magnitude (a model's FLOPs), and a
log cost makes a ratio, not a difference, what the trade-off weighs. Where the cost does not
depend on the task (a parameter count of fixed-size inputs), the network learns to ignore the
meta-features. Zero costs are allowed: the log is taken of `cost + floor`, `floor` half the
smallest positive cost in the table.

`train` is pure and jit-compiled, its training tasks a mask (like `tarch.meta_train.train`), so
leave-one-task-out folds share one program and `jax.vmap` over folds; `fit` is the host entry
point. The targets are standardised with the training rows' mean and std, so `predict_z` is a
unit-free log cost (one unit: one std of log cost over the training table).

Shape letters: T tasks, A architectures, F meta-features, E encoding width, N architectures,
B batch.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tarch import runs as runs_lib
from tarch.meta_train import FeatureScaler, task_mask


@dataclasses.dataclass(frozen=True)
class CostConfig:
  """Architecture and training of the cost model (all static: few settings, one program)."""

  hidden: tuple[int, ...] = (64, 64)  # MLP widths
  num_steps: int = 1500  # Adam steps
  batch_size: int = 512  # (task, architecture) pairs per step, drawn uniformly
  learning_rate: float = 3e-3  # peak of a cosine schedule
  meta_feature_dropout: float = 0.5  # probability of replacing a row's meta-features by the
  # training mean: each network also learns the across-task cost (its output at the mean)
  members: int = 4  # networks, each holding out every `members`-th training task (1: one
  # network on every training task, and the across-task output, with no held-out evidence)
  task_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # mixes of the task-aware and
  # the across-task prediction; the smallest within one standard error of the least held-out
  # error is kept
  seed: int = 0

  def __post_init__(self):
    checks = {"hidden widths >= 1": all(w >= 1 for w in self.hidden),
              "num_steps >= 1": self.num_steps >= 1, "batch_size >= 1": self.batch_size >= 1,
              "learning_rate > 0": self.learning_rate > 0,
              "0 <= meta_feature_dropout < 1": 0 <= self.meta_feature_dropout < 1,
              "members >= 1": self.members >= 1,
              "task_weights within [0, 1]": bool(self.task_weights) and all(
                  0 <= w <= 1 for w in self.task_weights)}
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
      raise ValueError(f"invalid CostConfig: need {', '.join(failed)}; got {self}")


class CostNet(nn.Module):
  hidden: tuple[int, ...]

  @nn.compact
  def __call__(self, mf_NxF, enc_NxE):
    x = jnp.concatenate([mf_NxF, enc_NxE], -1)
    for width in self.hidden:
      x = nn.gelu(nn.Dense(width)(x))
    return nn.Dense(1)(x)[..., 0]


@flax.struct.dataclass
class CostModel:
  """A trained cost model: `predict` gives costs in the table's units.

  The prediction is the members' mean of `w * net(m, a) + (1 - w) * net(mean task, a)`: the
  task-aware and the across-task cost mixed with the weight `task_weight` chosen on the
  held-out training tasks (the smallest within one standard error of the best), so that a
  task-dependent cost that does not carry over between tasks falls back to the across-task
  cost."""

  params: dict  # the members' networks, stacked on a leading axis [M, ...]
  scaler: FeatureScaler  # of the training tasks' meta-features
  mean: jax.Array  # float32 mean log cost (of cost + floor) over the training rows
  std: jax.Array  # float32 its std (> 0)
  floor: jax.Array  # float32 added to costs before the log
  task_weight: jax.Array  # float32 w, chosen on held-out training tasks
  config: CostConfig = flax.struct.field(pytree_node=False)

  def predict_z(self, features_F: jax.Array, enc_NxE: jax.Array) -> jax.Array:
    """Standardised predicted log cost `[N]` for a task with raw meta-features `[F]` (pure)."""
    mf_F = self.scaler(features_F) * self.scaler.trust(features_F)
    aware, prior = _member_predictions(self.config, self.params, mf_F, enc_NxE)
    return jnp.mean(self.task_weight * aware + (1 - self.task_weight) * prior, axis=0)

  def predict_log(self, features_F: jax.Array, enc_NxE: jax.Array) -> jax.Array:
    """Predicted log(cost + floor) `[N]`."""
    return self.mean + self.std * self.predict_z(features_F, enc_NxE)

  def predict(self, features_F, enc_NxE) -> np.ndarray:
    """Predicted costs `[N]` in the table's units (host; float64)."""
    log = np.asarray(_predict_log(self, jnp.asarray(features_F, jnp.float32),
                                  jnp.asarray(enc_NxE, jnp.float32)), np.float64)
    return np.maximum(np.exp(log) - float(self.floor), 0.0)


def _member_predictions(config: CostConfig, params_M, mf_F, enc_NxE):
  """Each member's task-aware and across-task (mean meta-features) predictions, `[M, N]` each."""
  net = CostNet(config.hidden)
  mf_NxF = jnp.broadcast_to(mf_F, (enc_NxE.shape[0], mf_F.shape[-1]))

  def one(params):
    return (net.apply(params, mf_NxF, enc_NxE), net.apply(params, jnp.zeros_like(mf_NxF),
                                                           enc_NxE))
  return jax.vmap(one)(params_M)


@jax.jit
def _predict_log(model, features_F, enc_NxE):
  return model.predict_log(features_F, enc_NxE)


def log_cost_table(ds: runs_lib.MetaDataset) -> tuple[np.ndarray, float]:
  """(`log(cost + floor)` per task and architecture `[T, A]` float32, NaN where the task did not
  evaluate it; floor). ValueError when the meta-dataset has no cost column."""
  if not ds.has_cost:
    raise ValueError(f"the meta-dataset has no `cost` column (add one to runs, see README), so "
                     f"tarch cannot learn what an architecture costs")
  positive = ds.cost_R[ds.cost_R > 0]
  floor = float(positive.min() / 2) if positive.size else 1.0
  table = np.full((ds.num_tasks, ds.num_archs), np.nan, np.float32)
  table[ds.task_R, ds.arch_R] = np.log(ds.cost_R + floor)
  return table, floor


def train(config: CostConfig, features_TxF: jax.Array, enc_AxE: jax.Array,
          log_cost_TxA: jax.Array, floor: jax.Array, mask_T: jax.Array,
          key: jax.Array) -> CostModel:
  """Fits the cost model on the rows of the tasks in `mask_T` (pure; jit or vmap it; the
  mask, the key and the arrays may be traced). Rows where `log_cost_TxA` is NaN do not count."""
  known_TxA = jnp.isfinite(log_cost_TxA) & mask_T[:, None]
  n = jnp.maximum(known_TxA.sum(), 1)
  y_TxA = jnp.where(known_TxA, log_cost_TxA, 0.0)
  mean = y_TxA.sum() / n
  std = jnp.sqrt(jnp.where(known_TxA, (y_TxA - mean) ** 2, 0.0).sum() / n)
  std = jnp.where(std > 1e-6, std, 1.0)
  z_TxA = (y_TxA - mean) / std
  scaler = FeatureScaler.fit_masked(features_TxF, mask_T)
  mf_TxF = scaler(features_TxF)
  # Member k holds out every `members`-th training task, from the k-th on (with a single
  # training task, nothing is held out).
  rank_T = jnp.cumsum(mask_T) - 1
  fold_T = jnp.where(mask_T, rank_T % config.members, -1)
  holds_out = (mask_T.sum() >= 2) & (config.members >= 2)
  held_out_MxT = holds_out & (fold_T[None] == jnp.arange(config.members)[:, None])
  member_mask_MxT = mask_T[None] & ~held_out_MxT
  params_M = jax.vmap(lambda m, k: _train_member(
      config, mf_TxF, enc_AxE, z_TxA, known_TxA & m[:, None], k))(
          member_mask_MxT, jax.random.split(key, config.members))

  # The held-out error of each mix: within-task-centred squared residuals (a task's level does
  # not change what a trade-off within it picks), each training task predicted by the member
  # that held it out.
  def task_predictions(t):
    member = jnp.maximum(fold_T[t], 0)
    aware, prior = _member_predictions(
        config, jax.tree.map(lambda x: x[member][None], params_M), mf_TxF[t], enc_AxE)
    return aware[0], prior[0]

  aware_TxA, prior_TxA = jax.lax.map(task_predictions, jnp.arange(mask_T.shape[0]))
  weights_W = jnp.asarray(config.task_weights, jnp.float32)
  held_TxA = known_TxA & holds_out

  count_T = jnp.maximum(held_TxA.sum(1), 1)
  held_T = held_TxA.any(1)

  def error_T(w):  # each held-out task's mean within-task-centred squared error
    r = jnp.where(held_TxA, z_TxA - (w * aware_TxA + (1 - w) * prior_TxA), 0.0)
    centred = r - r.sum(1, keepdims=True) / count_T[:, None]
    return jnp.sum(jnp.where(held_TxA, centred**2, 0.0), 1) / count_T

  # The smallest weight within one standard error (over held-out tasks) of the best: the
  # task-aware part has to earn its place, as V's optional terms do (`tarch.meta_train`).
  e_WxT = jax.vmap(error_T)(weights_W)
  n = jnp.maximum(held_T.sum(), 1)
  mean_W = jnp.sum(jnp.where(held_T, e_WxT, 0.0), 1) / n
  best = jnp.argmin(mean_W)
  var = jnp.sum(jnp.where(held_T, (e_WxT[best] - mean_W[best]) ** 2, 0.0)) / jnp.maximum(n - 1, 1)
  within_W = mean_W <= mean_W[best] + jnp.sqrt(var / n)
  task_weight = jnp.min(jnp.where(within_W, weights_W, jnp.inf))
  return CostModel(params=params_M, scaler=scaler, mean=mean, std=std,
                   floor=jnp.asarray(floor, jnp.float32), task_weight=task_weight, config=config)


def _train_member(config: CostConfig, mf_TxF, enc_AxE, z_TxA, known_TxA, key):
  """One member's network, regressed on the known rows of `z_TxA`."""
  # Rows drawn uniformly: a task in proportion to its known rows, then one of them.
  count_T = known_TxA.sum(1)
  task_logits = jnp.where(count_T > 0, jnp.log(jnp.maximum(count_T, 1)), -jnp.inf)
  known_first_TxA = jnp.argsort(~known_TxA, axis=1, stable=True)
  net = CostNet(config.hidden)
  k_init, k_steps = jax.random.split(key)
  params = net.init(k_init, mf_TxF[:1], enc_AxE[:1])
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, min(100, config.num_steps // 10 + 1), config.num_steps)
  optimizer = optax.adam(schedule)

  def loss(params, t, a, drop):
    mf = jnp.where(drop[:, None], 0.0, mf_TxF[t])
    return jnp.mean((net.apply(params, mf, enc_AxE[a]) - z_TxA[t, a]) ** 2)

  def step(carry, k):
    params, opt_state = carry
    k_task, k_row, k_drop = jax.random.split(k, 3)
    t = jax.random.categorical(k_task, task_logits, shape=(config.batch_size,))
    i = jnp.floor(jax.random.uniform(k_row, (config.batch_size,)) * count_T[t]).astype(jnp.int32)
    a = known_first_TxA[t, jnp.minimum(i, count_T[t] - 1)]
    drop = jax.random.bernoulli(k_drop, config.meta_feature_dropout, (config.batch_size,))
    grads = jax.grad(loss)(params, t, a, drop)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)),
                                jax.random.split(k_steps, config.num_steps))
  return params


train_jit = jax.jit(train, static_argnums=0)


def fit(ds: runs_lib.MetaDataset, config: CostConfig = CostConfig(),
        train_tasks=None) -> CostModel:
  """Trains the cost model on the results of `train_tasks` (default all); ValueError when the
  meta-dataset has no cost column."""
  table, floor = log_cost_table(ds)
  return train_jit(config, jnp.asarray(ds.features_TxF, jnp.float32),
                   jnp.asarray(ds.enc_AxE, jnp.float32), jnp.asarray(table),
                   jnp.asarray(floor, jnp.float32), jnp.asarray(task_mask(ds, train_tasks)),
                   jax.random.key(config.seed))
