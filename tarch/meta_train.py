"""Meta-training: fit an ensemble of value networks on a runs table.

The ensemble is trained as one vmapped, jit-compiled program. Each member holds out a different
slice of the training tasks and early-stops on its loss there, so the ensemble is both
cross-validated and bagged over tasks, and no data is thrown away overall. Batches are drawn as
a task, then a result of that task; tasks are drawn in proportion to their number of results
(every result counts the same, as in plain regression on the table) or uniformly.

Which tasks a run may learn from is an input *mask* over all tasks of the meta-dataset, never a
reshaped table. So every leave-one-task-out fold has the same array shapes and reuses one
compiled program, and whole fold simulations could be `jax.vmap`ed together.

Shape letters: T tasks, F meta-features, R results, A architectures, E encoding width,
M ensemble members, B batch, K evaluation rows per member.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tarch import normalize
from tarch import runs as runs_lib
from tarch import task_kernel as task_kernel_lib
from tarch import value_net as vn


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How the ensemble is trained. Hashable: a static argument of the compiled step."""

  loss: str = "pairwise"  # one of value_net.LOSSES
  target: str = "zscore"  # per-task normalisation, one of normalize.METHODS
  ensemble_size: int = 8  # members M, trained side by side in one vmapped program
  holdout_tasks: int = 1  # training tasks each member holds out (at least; members hold out
  # more when needed for every training task to be held out by one of them: k-fold
  # cross-validation); 0: none, early stopping on training pairs
  task_weighting: str = "results"  # how often a task is sampled: "results" (in proportion to
  # its number of results: every result counts the same) or "uniform" (every task the same)
  num_steps: int = 1500  # maximum optimiser steps per member
  eval_every: int = 100  # steps between early-stopping evaluations
  patience: int = 5  # evaluations without improvement (of every member) before stopping
  early_stopping: str = "top_quantile"  # held-out metric: "top_quantile" or "loss" (see
  # `_VALIDATION_METRICS`)
  top_quantile: float = 0.02  # fraction of held-out pairs, ranked by V, whose targets are averaged
  batch_size: int = 256  # (task, architecture) pairs per step and member
  eval_size: int = 2048  # held-out pairs per member for early stopping
  learning_rate: float = 3e-3  # peak of a cosine schedule
  weight_decay: float = 1e-4  # AdamW decoupled weight decay
  task_effect_scales: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)  # shrinkage of the
  # meta-feature term toward the across-task prior, chosen after training on held-out tasks
  shrinkage_rule: str = "one_se"  # "one_se": smallest scale within one standard error of the
  # best held-out metric; "best": the best one
  meta_feature_dropout: float = 0.5  # probability of replacing a sample's meta-features by the
  # training mean (zeros after standardisation): teaches V its across-task prior
  interaction_dropout: float = 0.5  # probability that a member's step trains V without its
  # interaction term: keeps the main effects a model of their own, so the term can be shrunk
  interaction_scales: tuple[float, ...] = (0.0, 1.0)  # scales of the interaction term, chosen
  # after training on held-out tasks by `shrinkage_rule` (before the task-effect scale)
  task_kernel: bool = True  # also consider ranking by the training tasks' results under a
  # kernel over tasks (`tarch.task_kernel`); used instead of V only where it does better on the
  # held-out training tasks (see `_choose_ranker`)
  seed: int = 0

  def __post_init__(self):
    vn.get_loss(self.loss)  # Raises naming the valid losses.
    try:
      normalize.check_normalization(self.target)
    except ValueError as e:
      raise ValueError(f"invalid TrainConfig target: {e}") from None
    checks = {
        "ensemble_size >= 1": self.ensemble_size >= 1,
        "holdout_tasks >= 0": self.holdout_tasks >= 0,
        "num_steps >= 1": self.num_steps >= 1,
        "eval_every >= 1": self.eval_every >= 1,
        "patience >= 1": self.patience >= 1,
        "batch_size >= 1": self.batch_size >= 1,
        "eval_size >= 1": self.eval_size >= 1,
        "0 < top_quantile <= 1": 0 < self.top_quantile <= 1,
        "0 <= meta_feature_dropout < 1": 0 <= self.meta_feature_dropout < 1,
        "0 <= interaction_dropout < 1": 0 <= self.interaction_dropout < 1,
        "interaction_scales within [0, 1]": all(0 <= x <= 1 for x in self.interaction_scales),
        "learning_rate > 0": self.learning_rate > 0,
        f"early_stopping in {sorted(_VALIDATION_METRICS)}":
            self.early_stopping in _VALIDATION_METRICS,
        "shrinkage_rule in ('one_se', 'best')": self.shrinkage_rule in ("one_se", "best"),
        "task_weighting in ('results', 'uniform')":
            self.task_weighting in ("results", "uniform"),
        "task_effect_scales within [0, 1]": all(0 <= x <= 1 for x in self.task_effect_scales),
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
      raise ValueError(f"invalid TrainConfig: need {', '.join(failed)}; got {self}")


@flax.struct.dataclass
class FeatureScaler:
  """Standardises meta-features with training-task statistics, clipped to their training range.

  Clipping keeps a new task whose meta-features lie far outside the training tasks from driving
  V into regions it never saw; `trust` measures how far outside they lie.
  """

  mean_F: jax.Array  # float32 [F]
  std_F: jax.Array  # float32 [F], > 0
  low_F: jax.Array  # float32 [F] smallest standardised training value
  high_F: jax.Array  # float32 [F] largest standardised training value

  @classmethod
  def fit(cls, features_TxF: np.ndarray) -> FeatureScaler:
    x = np.asarray(features_TxF, np.float64)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    z = (x - mean) / std
    return cls(*(jnp.asarray(v, jnp.float32) for v in (mean, std, z.min(0), z.max(0))))

  def __call__(self, mf_xF: jax.Array) -> jax.Array:
    return jnp.clip(self.standardize(mf_xF), self.low_F, self.high_F)

  def trust(self, mf_xF: jax.Array) -> jax.Array:
    """exp(-d^2 / 2), d = how far (in training stds) the meta-features lie outside the range.

    1 inside the training tasks' range. The meta-feature term of V is an extrapolation beyond
    it, so `ValueModel` fades that term out, toward the across-task prior, as d grows.
    """
    z = self.standardize(mf_xF)
    excess = z - jnp.clip(z, self.low_F, self.high_F)
    return jnp.exp(-0.5 * jnp.sum(excess**2, axis=-1))

  def standardize(self, mf_xF: jax.Array) -> jax.Array:
    """(meta-features - training mean) / training std, not clipped."""
    return (mf_xF - self.mean_F) / self.std_F


@flax.struct.dataclass
class ValueModel:
  """A trained ensemble: everything `tarch.infer` needs to score architectures for a task.

  `ranker` says what candidates are ranked by: "value_net" (V) or "task_kernel" (the training
  tasks' results weighted by a kernel over tasks, `kernel`), whichever `fit` found to pick
  better on held-out training tasks.
  """

  params: Any  # Flax params with a leading ensemble axis [M, ...]
  scaler: FeatureScaler
  config: vn.ValueNetConfig = flax.struct.field(pytree_node=False)
  task_effect_scale: float = 1.0  # the shrinkage chosen by `fit` (already applied to
  # `params`; kept for reporting; a leaf, so models differing only in it share compilations)
  interaction_scale: float = 1.0  # likewise for the interaction term
  kernel: task_kernel_lib.TaskKernel | None = None  # the training table, for the kernel ranker
  ranker: str = flax.struct.field(pytree_node=False, default="value_net")

  def predict(self, features_F: jax.Array, enc_NxE: jax.Array,
              pessimism: float = 0.0) -> jax.Array:
    """Value `[N]` of architectures for a task with raw meta-features: the ensemble mean, minus
    `pessimism` member standard deviations (`value_net.lower_bound`)."""
    return _predict(self, features_F, enc_NxE, float(pessimism))

  def score(self, features_F: jax.Array, enc_NxE: jax.Array,
            pessimism: float = 0.0) -> jax.Array:
    """What candidates are ranked by `[N]`: `predict` for the "value_net" ranker; for
    "task_kernel", the kernel-weighted mean percentile of each one's nearest table architecture
    (`tarch.task_kernel`)."""
    if self.ranker == "task_kernel":
      return self.kernel.scores(self.scaler.standardize(jnp.asarray(features_F, jnp.float32)),
                                jnp.asarray(enc_NxE, jnp.float32))
    return self.predict(features_F, enc_NxE, pessimism)

  def predict_members(self, features_F: jax.Array, enc_NxE: jax.Array) -> jax.Array:
    """Per-member values `[M, N]`."""
    return _predict_members(self, features_F, enc_NxE)

  def task_embeddings(self, features_F: jax.Array) -> jax.Array:
    """Each member's meta-feature term for a task with raw meta-features: `[M, D]`.

    Scaled by `FeatureScaler.trust`, so a task far outside the training tasks' meta-feature
    range gets the across-task prior rather than an extrapolation.
    """
    g_MxD = vn.task_embeddings(self.config, self.params, self.scaler(features_F))
    return g_MxD * self.scaler.trust(features_F)

  def value(self, mf_F: jax.Array, enc_E: jax.Array, pessimism: float = 0.0) -> jax.Array:
    """The ascent objective for one encoding, given *standardised* meta-features."""
    g_MxD = vn.task_embeddings(self.config, self.params, mf_F)
    return vn.ensemble_value(self.config, self.params, g_MxD, enc_E, pessimism)

  @property
  def ensemble_size(self) -> int:
    return jax.tree.leaves(self.params)[0].shape[0]


@jax.jit
def _predict_members(model: ValueModel, features_F, enc_NxE):
  return vn.apply_embedded(model.config, model.params, model.task_embeddings(features_F),
                           enc_NxE)


@functools.partial(jax.jit, static_argnames="pessimism")
def _predict(model: ValueModel, features_F, enc_NxE, pessimism):
  return vn.lower_bound(_predict_members(model, features_F, enc_NxE), pessimism)


class TrainData(flax.struct.PyTreeNode):
  """Device arrays of one meta-dataset, results sorted by task. Fold-independent."""

  mf_TxF: jax.Array  # float32 standardised meta-features
  enc_AxE: jax.Array  # float32 architecture encodings
  arch_R: jax.Array  # int32 architecture of each result
  target_R: jax.Array  # float32 per-task normalised score
  start_T: jax.Array  # int32 first result row of each task
  count_T: jax.Array  # int32 results of each task


def _sample_pairs(key, data: TrainData, task_weight_T, n: int):
  """Draws `n` (task, row, other row) triples: task by weight, rows uniformly within it."""
  kt, ki, kj = jax.random.split(key, 3)
  task = jax.random.categorical(kt, jnp.log(task_weight_T), shape=(n,))
  count, start = data.count_T[task], data.start_T[task]
  row_i = start + jnp.floor(jax.random.uniform(ki, (n,)) * count).astype(jnp.int32)
  row_j = start + jnp.floor(jax.random.uniform(kj, (n,)) * count).astype(jnp.int32)
  return task, row_i, row_j


def _batch_loss(net_config, train_config, params, data: TrainData, task, row_i, row_j, drop):
  loss_fn = vn.get_loss(train_config.loss)
  mf = jnp.where(drop[:, None], 0.0, data.mf_TxF[task])
  enc_i, enc_j = data.enc_AxE[data.arch_R[row_i]], data.enc_AxE[data.arch_R[row_j]]
  return loss_fn(net_config, params, mf, enc_i, data.target_R[row_i], enc_j,
                 data.target_R[row_j])


def _optimizer(train_config: TrainConfig) -> optax.GradientTransformation:
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, train_config.learning_rate, min(100, train_config.num_steps // 10 + 1),
      train_config.num_steps)
  return optax.adamw(schedule, weight_decay=train_config.weight_decay)


@functools.partial(jax.jit, static_argnames=("net_config", "train_config", "num_steps"))
def _train_chunk(net_config, train_config, num_steps, params_M, opt_state_M, key, data,
                 train_weight_MxT):
  """`num_steps` optimiser steps of every member; returns new params, state and mean loss."""
  optimizer = _optimizer(train_config)

  def member_step(params, opt_state, key, weight_T):
    k_pairs, k_drop, k_inter = jax.random.split(key, 3)
    task, row_i, row_j = _sample_pairs(k_pairs, data, weight_T, train_config.batch_size)
    drop = jax.random.bernoulli(k_drop, train_config.meta_feature_dropout, task.shape)
    keep_interactions = 1.0 - jax.random.bernoulli(k_inter, train_config.interaction_dropout)
    grad_fn = jax.value_and_grad(
        lambda p: _batch_loss(net_config, train_config, scale_interactions(p, keep_interactions),
                              data, task, row_i, row_j, drop),
        has_aux=True)
    (loss, _), grads = grad_fn(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def step(carry, key):
    params, opt_state = carry
    keys = jax.random.split(key, train_weight_MxT.shape[0])
    params, opt_state, loss = jax.vmap(member_step)(params, opt_state, keys, train_weight_MxT)
    return (params, opt_state), loss

  (params_M, opt_state_M), loss = jax.lax.scan(
      step, (params_M, opt_state_M), jax.random.split(key, num_steps))
  return params_M, opt_state_M, loss.mean(0)


def _top_quantile_metric(net_config, train_config, params, data, task, row_i, row_j):
  """Negated mean target of the architectures V ranks in its top quantile (lower is better).

  This is what inference relies on: the top of V's ranking on an unseen task. A regression or
  pairwise loss is dominated by telling bad architectures from average ones, which keeps
  improving while the top of the ranking, which transfers less, is being overfitted.
  """
  del row_j
  net = vn.ValueNet(net_config)
  value = net.apply(params, data.mf_TxF[task], data.enc_AxE[data.arch_R[row_i]])
  k = max(1, round(train_config.top_quantile * task.shape[0]))
  _, top = jax.lax.top_k(value, k)
  return -data.target_R[row_i][top].mean()


def _loss_metric(net_config, train_config, params, data, task, row_i, row_j):
  """The training loss on held-out pairs, without meta-feature dropout."""
  drop = jnp.zeros(task.shape, bool)
  return _batch_loss(net_config, train_config, params, data, task, row_i, row_j, drop)[0]


_VALIDATION_METRICS = {"top_quantile": _top_quantile_metric, "loss": _loss_metric}


@functools.partial(jax.jit, static_argnames=("net_config", "train_config"))
def _validation(net_config, train_config, params_M, data, task_MxK, row_i_MxK, row_j_MxK):
  """Early-stopping metric of each member on its own held-out pairs (lower is better): `[M]`."""
  metric = _VALIDATION_METRICS[train_config.early_stopping]
  return jax.vmap(lambda p, t, i, j: metric(net_config, train_config, p, data, t, i, j))(
      params_M, task_MxK, row_i_MxK, row_j_MxK)


def _keep_better(better_M: np.ndarray, new_M, old_M):
  """Per member: the new params where it improved, else the old ones."""
  return jax.tree.map(
      lambda new, old: jnp.where(better_M.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
      new_M, old_M)


def _holdout_masks(train_mask_T: np.ndarray, train_config: TrainConfig, rng) -> tuple:
  """Per-member (fit weight, held-out mask) over tasks; members rotate through the tasks, each
  holding out `holdout_tasks` or, if more are needed for every task to be held out once, more."""
  tasks = np.flatnonzero(train_mask_T)
  m, k = train_config.ensemble_size, train_config.holdout_tasks
  if k > 0 and m > 1:
    # k-fold, every training task held out by some member, as long as each member still
    # learns from at least half of them.
    k = max(k, min(-(-len(tasks) // m), len(tasks) // 2))
  fit_w = np.tile(train_mask_T.astype(np.float32), (m, 1))
  held = np.zeros_like(fit_w, dtype=bool)
  if len(tasks) <= k or k == 0:
    held[:] = train_mask_T  # Too few tasks to hold any out: early-stop on training loss.
    return fit_w, held
  order = rng.permutation(tasks)
  for member in range(m):
    out = order[(member * k + np.arange(k)) % len(order)]
    fit_w[member, out] = 0.0
    held[member, out] = True
  return fit_w, held


def prepare_data(ds: runs_lib.MetaDataset, target: str, scaler: FeatureScaler) -> TrainData:
  """Device arrays for training; `scaler` standardises the meta-features."""
  order = np.lexsort((ds.arch_R, ds.task_R))
  task_R = ds.task_R[order]
  target_R = normalize.normalize_scores(ds.score_R[order], task_R, ds.num_tasks, target)
  count = np.bincount(task_R, minlength=ds.num_tasks)
  start = np.concatenate([[0], np.cumsum(count)[:-1]])
  return TrainData(
      mf_TxF=scaler(jnp.asarray(ds.features_TxF, jnp.float32)),
      enc_AxE=jnp.asarray(ds.enc_AxE, jnp.float32),
      arch_R=jnp.asarray(ds.arch_R[order], jnp.int32),
      target_R=jnp.asarray(target_R, jnp.float32),
      start_T=jnp.asarray(start, jnp.int32),
      count_T=jnp.asarray(count, jnp.int32))


def fit(ds: runs_lib.MetaDataset, net_config: vn.ValueNetConfig, train_config: TrainConfig,
        train_tasks=None, progress: Callable[[dict], None] | None = None
        ) -> tuple[ValueModel, list[dict]]:
  """Trains the value-network ensemble on the results of `train_tasks`.

  Args:
    ds: the meta-dataset (all tasks; the others are masked out, so shapes do not depend on the
      choice of training tasks and folds share one compiled program).
    net_config: architecture of V.
    train_config: optimisation settings.
    train_tasks: indices or names of the tasks to learn from; default all.
    progress: called after each evaluation with a dict (step, train_loss, val_loss,
      best_val_loss); val_loss is the early-stopping metric, lower is better.

  Returns:
    The trained `ValueModel` (each member at its best held-out step, the meta-feature term
    shrunk by the `interaction_scales`, then the `task_effect_scales`, entry that
    `shrinkage_rule` picks on the held-out tasks; with `train_config.task_kernel`, the task
    kernel attached and the ranker chosen by `_choose_ranker`, whose report `progress` also
    receives) and the history, one dict per evaluation.
  """
  mask_T = np.zeros(ds.num_tasks, bool)
  if train_tasks is None:
    mask_T[:] = True
  else:
    mask_T[ds.task_indices(train_tasks)] = True
  if not mask_T.any():
    raise ValueError("fit needs at least one training task")
  net_config = dataclasses.replace(
      net_config, encoding_dim=ds.space.dim, numeric_dims=ds.space.numeric_dims)
  scaler = FeatureScaler.fit(ds.features_TxF[mask_T])
  data = prepare_data(ds, train_config.target, scaler)
  rng = np.random.default_rng(train_config.seed)
  fit_w, held = _holdout_masks(mask_T, train_config, rng)
  if train_config.task_weighting == "results":
    fit_w = fit_w * np.bincount(ds.task_R, minlength=ds.num_tasks)
  key = jax.random.key(train_config.seed)
  key, k_init, k_eval = jax.random.split(key, 3)
  params = jax.vmap(lambda k: vn.init_params(
      net_config, k, ds.num_features, ds.space.dim))(jax.random.split(k_init, len(fit_w)))
  opt_state = jax.vmap(_optimizer(train_config).init)(params)
  held_w = jnp.asarray(held, jnp.float32)
  eval_pairs = jax.vmap(lambda k, w: _sample_pairs(k, data, w, train_config.eval_size))(
      jax.random.split(k_eval, len(fit_w)), held_w)

  best_params, best_loss = params, np.full(len(fit_w), np.inf)
  history, stale, step = [], 0, 0
  fit_w = jnp.asarray(fit_w)
  while step < train_config.num_steps and stale < train_config.patience:
    n = min(train_config.eval_every, train_config.num_steps - step)
    key, k = jax.random.split(key)
    params, opt_state, train_loss = _train_chunk(
        net_config, train_config, n, params, opt_state, k, data, fit_w)
    step += n
    val_loss = np.asarray(_validation(net_config, train_config, params, data, *eval_pairs))
    better = val_loss < best_loss
    best_loss = np.where(better, val_loss, best_loss)
    best_params = _keep_better(better, params, best_params)
    stale = 0 if better.any() else stale + 1
    record = {"step": step, "train_loss": float(np.mean(train_loss)),
              "val_loss": float(np.mean(val_loss)), "best_val_loss": float(np.mean(best_loss))}
    history.append(record)
    if progress is not None:
      progress(record)
  def choose(scales, scaled):
    """The scale `shrinkage_rule` picks on the held-out tasks; `scaled(params, s)` applies one."""
    scales = sorted(scales)
    per_member = np.stack([np.asarray(_validation(
        net_config, train_config, scaled(best_params, s), data, *eval_pairs))
                           for s in scales])  # [S, M]
    if train_config.shrinkage_rule == "one_se":
      return _one_standard_error_choice(scales, per_member), per_member
    return scales[int(np.argmin(per_member.mean(1)))], per_member

  # Shrinkage, term by term, each toward the simpler model: first the interactions, then the
  # meta-feature term (given the chosen interactions).
  chosen = {"interaction_scale": 1.0, "task_effect_scale": 1.0}
  for name, active, scales, scaled in (
      ("interaction_scale", bool(net_config.interaction_hidden), train_config.interaction_scales,
       scale_interactions),
      ("task_effect_scale", net_config.use_meta_features, train_config.task_effect_scales,
       scale_task_effects)):
    if active and scales:
      chosen[name], per_member = choose(scales, scaled)
      best_params = scaled(best_params, chosen[name])
      if progress is not None:
        progress({name: chosen[name], f"val_loss_by_{name}":
                  dict(zip(sorted(scales), per_member.mean(1).tolist()))})
  model = ValueModel(params=best_params, scaler=scaler, config=net_config, **chosen)
  # Without held-out tasks (every member "holds out" every training task) there is nothing to
  # compare the rankers on, and with fewer than 3 training tasks no bandwidth to choose.
  if train_config.task_kernel and not held[:, mask_T].all() and mask_T.sum() >= 3:
    model, report = _choose_ranker(ds, model, mask_T, held, train_config)
    if progress is not None:
      progress(report)
  return model, history


def _choose_ranker(ds: runs_lib.MetaDataset, model: ValueModel, mask_T: np.ndarray,
                   held_MxT: np.ndarray, train_config: TrainConfig) -> tuple[ValueModel, dict]:
  """`model` with the task kernel attached and the ranker that picks better on held-out tasks.

  Every member scores each training task it held out; the task kernel (its bandwidth chosen
  by leave-one-task-out over all training tasks, `tarch.task_kernel.choose_bandwidth`) scores
  the same task from the other training tasks. Both are judged by the mean percentile of the
  architectures they rank in the task's top `top_quantile`, and the paired one-standard-error
  rule keeps V unless the kernel is better by more than a standard error. V is judged member by
  member (a held-out task is only unseen by the member that held it out), although inference
  uses the ensemble mean, which tilts the comparison somewhat toward the kernel; the kernel's
  bandwidth was chosen on the same tasks, which tilts it the same way.
  """
  train = np.flatnonzero(mask_T)
  rows = np.isin(ds.task_R, train)
  pct_R = normalize.normalize_scores(ds.score_R, ds.task_R, ds.num_tasks, "percentile")
  kernel = task_kernel_lib.TaskKernel.build(
      np.asarray(model.scaler.standardize(jnp.asarray(ds.features_TxF[train], jnp.float32))),
      np.ones(len(train), bool), np.searchsorted(train, ds.task_R[rows]), ds.arch_R[rows],
      pct_R[rows], ds.enc_AxE)
  kernel, loo_TxB, chosen_b = task_kernel_lib.choose_bandwidth(kernel, train_config.top_quantile)
  value_net, task_kernel = [], []
  for member, t in zip(*np.nonzero(held_MxT[:, train])):
    task_rows = ds.task_rows(train[t])
    values = np.asarray(model.predict_members(
        jnp.asarray(ds.features_TxF[train[t]], jnp.float32),
        jnp.asarray(ds.enc_AxE[ds.arch_R[task_rows]])))[member]
    value_net.append(task_kernel_lib.top_quantile_mean(values, pct_R[task_rows],
                                                       train_config.top_quantile))
    task_kernel.append(loo_TxB[t, chosen_b])
  metric_SxN = -np.array([value_net, task_kernel])  # lower is better, V first
  ranker = ("value_net", "task_kernel")[int(_one_standard_error_choice([0, 1], metric_SxN))]
  report = {"ranker": ranker, "kernel_bandwidth": float(kernel.bandwidth),
            "heldout_top_percentile": {"value_net": float(np.mean(value_net)),
                                       "task_kernel": float(np.mean(task_kernel))}}
  return model.replace(kernel=kernel, ranker=ranker), report


def _one_standard_error_choice(scales: list[float], metric_SxM: np.ndarray) -> float:
  """The smallest scale whose held-out metric is within one standard error of the best's.

  The "one standard error" rule of cross-validation: among settings the held-out tasks cannot
  tell apart, take the simplest, here the one closest to the simpler model. The comparison is
  paired: every member scores every scale on its own held-out task, so the standard error is
  that of the per-member difference to the best scale (the spread between tasks, which a
  difference cancels, would otherwise hide any real gain).
  """
  mean = metric_SxM.mean(1)
  best = int(np.argmin(mean))
  m = metric_SxM.shape[1]
  for s, row in zip(scales, metric_SxM):
    diff = row - metric_SxM[best]
    se = diff.std(ddof=1) / np.sqrt(m) if m > 1 else 0.0
    if diff.mean() <= se:
      return float(s)
  return float(scales[best])


def _scale_layer(params, layer: str, scale):
  return jax.tree_util.tree_map_with_path(
      lambda path, x: x * scale if any(getattr(k, "key", None) == layer for k in path) else x,
      params)


def scale_task_effects(params, scale: float):
  """Params with the meta-feature term of V multiplied by `scale` (0: the across-task prior).

  The term is linear in the last layer of G, so scaling that layer's kernel and bias scales it.
  """
  return _scale_layer(params, "task_effects", scale)


def scale_interactions(params, scale):
  """Params with the interaction term of V multiplied by `scale` (0: main effects only); the
  term is linear in the interaction MLP's last layer. Params without the term are unchanged."""
  return _scale_layer(params, "interactions", scale)


# -------------------------------------------------------------------------------- save / restore


def save(model: ValueModel, directory: str | os.PathLike) -> None:
  """Writes a ValueModel with Orbax (arrays) plus `value_net.json` (its static config)."""
  import orbax.checkpoint as ocp  # Imported lazily: Orbax is slow to import and rarely needed.

  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  state = {"params": model.params, "scaler": dataclasses.asdict(model.scaler)}
  if model.kernel is not None:
    state["kernel"] = dataclasses.asdict(model.kernel)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(os.path.join(directory, "state"), state, force=True)
  config = {**dataclasses.asdict(model.config),
            "task_effect_scale": float(model.task_effect_scale),
            "interaction_scale": float(model.interaction_scale), "ranker": model.ranker}
  tmp = os.path.join(directory, "value_net.json.tmp")
  with open(tmp, "w") as f:
    json.dump(config, f, indent=2)
  os.replace(tmp, os.path.join(directory, "value_net.json"))


def restore(directory: str | os.PathLike) -> ValueModel:
  """Reads a ValueModel written by `save`."""
  import orbax.checkpoint as ocp

  directory = os.path.abspath(directory)
  with open(os.path.join(directory, "value_net.json")) as f:
    raw = json.load(f)
  scales = {name: float(raw.pop(name, 1.0))
            for name in ("task_effect_scale", "interaction_scale")}
  ranker = raw.pop("ranker", "value_net")
  config = vn.ValueNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
  with ocp.StandardCheckpointer() as ckpt:
    state = ckpt.restore(os.path.join(directory, "state"))
  kernel = (task_kernel_lib.TaskKernel(**state["kernel"]) if "kernel" in state else None)
  return ValueModel(params=state["params"], scaler=FeatureScaler(**state["scaler"]),
                    config=config, kernel=kernel, ranker=ranker, **scales)
