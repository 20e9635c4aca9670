"""Meta-training: fit an ensemble of value networks on a runs table.

`train` is one pure, jit-compiled function: the members are trained side by side in a
`jax.vmap`, early stopping happens in the graph (a `lax.while_loop` over evaluation periods), and
the shrinkage choices are jnp. Each member holds out a different slice of the training tasks and
early-stops on its metric there, so the ensemble is both cross-validated and bagged over tasks,
and no data is thrown away overall. Batches are drawn as a task, then a result of that task;
tasks are drawn in proportion to their number of results (every result counts the same, as in
plain regression on the table) or uniformly. `fit` is the host entry point (it also chooses the
ranker, `tarch.ranker`).

Which tasks a run may learn from is an input *mask* over all tasks of the meta-dataset, never a
reshaped table, and the fields of `TrainConfig.DYNAMIC` are traced arrays: every
leave-one-task-out fold, seed and learning rate reuses one compiled program, and whole fold
simulations are `jax.vmap`ped together (`tarch.simulate`, `tarch.sweep`).

Shape letters: T tasks, F meta-features, R results, A architectures, E encoding width,
M ensemble members, B batch, K evaluation rows per member.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tarch import hparams, normalize, tables
from tarch import runs as runs_lib
from tarch import task_kernel as task_kernel_lib
from tarch import value_net as vn


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How the ensemble is trained. The fields of `DYNAMIC` are traced arrays in the compiled
  training (`tarch.hparams.split`), so that sweeps over them compile once; the others are
  static."""

  DYNAMIC: ClassVar[tuple[str, ...]] = (
      "seed", "learning_rate", "weight_decay", "meta_feature_dropout", "interaction_dropout",
      "top_quantile", "top_weight")

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
  top_weight: float = 0.0  # a training pair weighs p^top_weight, p the higher of its two
  # architectures' percentiles within the task: > 0 puts the loss on the order at the top of a
  # task's ranking, where the pick is decided; 0 (default): every pair the same (BUILD_NOTES.md
  # has where 3 helps V and where it costs the blend)
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
  blend: bool = True  # rank by the blend of V, task kernels and best_on_average that picks best
  # on the held-out training tasks (`tarch.ranker.choose`); False: V alone
  seed: int = 0

  def __post_init__(self):
    vn.get_loss(self.loss)  # Raises naming the valid losses.
    try:
      normalize.check_normalization(self.target)
    except ValueError as e:
      raise ValueError(f"invalid TrainConfig target: {e}") from None
    checks = {
        "0 <= seed < 2**31": 0 <= self.seed < 2**31,
        "ensemble_size >= 1": self.ensemble_size >= 1,
        "holdout_tasks >= 0": self.holdout_tasks >= 0,
        "num_steps >= 1": self.num_steps >= 1,
        "eval_every >= 1": self.eval_every >= 1,
        "patience >= 1": self.patience >= 1,
        "batch_size >= 1": self.batch_size >= 1,
        "eval_size >= 1": self.eval_size >= 1,
        "0 < top_quantile <= 1": 0 < self.top_quantile <= 1,
        "top_weight >= 0": self.top_weight >= 0,
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
  def fit(cls, features_TxF) -> FeatureScaler:
    """From the meta-features of the training tasks."""
    features_TxF = jnp.asarray(features_TxF, jnp.float32)
    return cls.fit_masked(features_TxF, jnp.ones(features_TxF.shape[0], bool))

  @classmethod
  def fit_masked(cls, features_TxF: jax.Array, mask_T: jax.Array) -> FeatureScaler:
    """From the meta-features of the tasks in `mask_T` (jit-compatible: the mask may be
    traced). Statistics are computed around the first training task's values, which keeps
    float32 accurate for features with a large offset, and the spread is measured in units of
    the largest deviation, so that squares neither overflow (features of 1e20) nor flush to
    zero (features of 1e-20). A feature that is constant over the training tasks gets std 1."""
    x = jnp.asarray(features_TxF, jnp.float32)
    w = jnp.asarray(mask_T, jnp.float32)[:, None]
    n = jnp.maximum(w.sum(), 1.0)
    ref = x[jnp.argmax(mask_T)]
    d = x - ref
    mean_d = (w * d).sum(0) / n
    unit = jnp.max(jnp.where(w > 0, jnp.abs(d - mean_d), 0.0), axis=0)
    safe_unit = jnp.where(unit > 0, unit, 1.0)
    std = safe_unit * jnp.sqrt((w * ((d - mean_d) / safe_unit) ** 2).sum(0) / n)
    std = jnp.where(unit > 0, std, 1.0)
    mean = ref + mean_d
    z = (d - mean_d) / std
    low = jnp.where(w > 0, z, jnp.inf).min(0)
    high = jnp.where(w > 0, z, -jnp.inf).max(0)
    return cls(mean_F=mean, std_F=std, low_F=low, high_F=high)

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

  `blend_C` weighs what candidates are ranked by (`tarch.ranker.COMPONENTS`: V, the training
  tasks' results under kernels over tasks from nearest-task to wide, and best_on_average), as
  `tarch.ranker.choose` found best on held-out training tasks; an array, so that the choice can
  be made inside a compiled simulation. `ranker` is "value_net" when V ranks alone (then
  `tarch.infer` ascends V), else "blend".
  """

  params: Any  # Flax params with a leading ensemble axis [M, ...]
  scaler: FeatureScaler
  config: vn.ValueNetConfig = flax.struct.field(pytree_node=False)
  task_effect_scale: float = 1.0  # the shrinkage chosen by `fit` (already applied to
  # `params`; kept for reporting; a leaf, so models differing only in it share compilations)
  interaction_scale: float = 1.0  # likewise for the interaction term
  kernel: task_kernel_lib.TaskKernel | None = None  # the training tasks' table, for the blend
  blend_C: Any = None  # float32 [C] weights of the ranker's components; None: V alone
  cost_model: Any = None  # `tarch.cost_model.CostModel` of the training tasks' costs (`fit`
  # trains one when the meta-dataset has a cost column), for cost-aware inference; or None

  @property
  def ranker(self) -> str:
    """ "value_net" (V alone) or "blend" (host only: reads `blend_C`)."""
    if self.kernel is None or self.blend_C is None or float(np.asarray(self.blend_C)[0]) == 1:
      return "value_net"
    return "blend"

  def predict(self, features_F: jax.Array, enc_NxE: jax.Array,
              pessimism: float = 0.0) -> jax.Array:
    """Value `[N]` of architectures for a task with raw meta-features: the ensemble mean, minus
    `pessimism` member standard deviations (`value_net.lower_bound`)."""
    return _predict(self, features_F, enc_NxE, float(pessimism))

  def score(self, features_F: jax.Array, enc_NxE: jax.Array,
            pessimism: float = 0.0) -> jax.Array:
    """What candidates are ranked by `[N]`: `predict` for the "value_net" ranker; for "blend",
    the blend of V's values and the table components of each one's nearest table architecture,
    each standardised over the N candidates (`tarch.ranker.blend_scores`)."""
    if self.ranker == "value_net":
      return self.predict(features_F, enc_NxE, pessimism)
    rows = tables.table_rows(self.kernel.table.enc_AxE, enc_NxE)
    return _blend_score(self, jnp.asarray(features_F, jnp.float32),
                        jnp.asarray(enc_NxE, jnp.float32), rows, float(pessimism))

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


@functools.partial(jax.jit, static_argnames="pessimism")
def _blend_score(model: ValueModel, features_F, enc_NxE, rows_N, pessimism):
  from tarch import ranker as ranker_lib  # ranker builds on this module
  value_N = _predict(model, features_F, enc_NxE, pessimism)
  z_F = model.scaler.standardize(features_F)
  scores_CxN = ranker_lib.table_components(
      model.kernel, z_F, jnp.zeros(model.kernel.table.enc_AxE.shape[0]))[:, rows_N]
  return ranker_lib.blend_scores(model.blend_C, scores_CxN.at[0].set(value_N),
                                 jnp.ones(value_N.shape[0], bool))


class TrainData(flax.struct.PyTreeNode):
  """Device arrays of one meta-dataset, results sorted by task. Fold-independent: which tasks a
  fold learns from is a mask, and the meta-features are standardised inside the fold."""

  features_TxF: jax.Array  # float32 raw meta-features
  enc_AxE: jax.Array  # float32 architecture encodings
  arch_R: jax.Array  # int32 architecture of each result
  target_R: jax.Array  # float32 per-task normalised score
  percentile_R: jax.Array  # float32 the score's percentile within its task, in (0, 1]
  start_T: jax.Array  # int32 first result row of each task
  count_T: jax.Array  # int32 results of each task


def prepare_data(ds: runs_lib.MetaDataset, target: str) -> TrainData:
  """Device arrays for training with per-task `target` normalisation."""
  order = np.lexsort((ds.arch_R, ds.task_R))
  task_R = ds.task_R[order]
  target_R = normalize.normalize_scores(ds.score_R[order], task_R, ds.num_tasks, target)
  count = np.bincount(task_R, minlength=ds.num_tasks)
  start = np.concatenate([[0], np.cumsum(count)[:-1]])
  return TrainData(
      features_TxF=jnp.asarray(ds.features_TxF, jnp.float32),
      enc_AxE=jnp.asarray(ds.enc_AxE, jnp.float32),
      arch_R=jnp.asarray(ds.arch_R[order], jnp.int32),
      target_R=jnp.asarray(target_R, jnp.float32),
      percentile_R=jnp.asarray(normalize.normalize_scores(ds.score_R[order], task_R,
                                                          ds.num_tasks, "percentile"),
                               jnp.float32),
      start_T=jnp.asarray(start, jnp.int32),
      count_T=jnp.asarray(count, jnp.int32))


def _sample_pairs(key, data: TrainData, task_weight_T, n: int):
  """Draws `n` (task, row, other row) triples: task by weight, rows uniformly within it."""
  kt, ki, kj = jax.random.split(key, 3)
  task = jax.random.categorical(kt, jnp.log(task_weight_T), shape=(n,))
  count, start = data.count_T[task], data.start_T[task]
  row_i = start + jnp.floor(jax.random.uniform(ki, (n,)) * count).astype(jnp.int32)
  row_j = start + jnp.floor(jax.random.uniform(kj, (n,)) * count).astype(jnp.int32)
  return task, row_i, row_j


def _batch_loss(net_config, train_config, params, mf_TxF, data: TrainData, task, row_i, row_j,
                drop, top_weight):
  loss_fn = vn.get_loss(train_config.loss)
  mf = jnp.where(drop[:, None], 0.0, mf_TxF[task])
  enc_i, enc_j = data.enc_AxE[data.arch_R[row_i]], data.enc_AxE[data.arch_R[row_j]]
  weight_B = jnp.maximum(data.percentile_R[row_i], data.percentile_R[row_j]) ** top_weight
  return loss_fn(net_config, params, mf, enc_i, data.target_R[row_i], enc_j,
                 data.target_R[row_j], weight_B)


def _optimizer(train_config: TrainConfig, dyn) -> optax.GradientTransformation:
  """AdamW on a warm-up + cosine schedule; the peak rate and weight decay may be traced."""
  unit = optax.warmup_cosine_decay_schedule(
      0.0, 1.0, min(100, train_config.num_steps // 10 + 1), train_config.num_steps)
  return optax.adamw(lambda step: dyn["learning_rate"] * unit(step),
                     weight_decay=dyn["weight_decay"])


def _top_quantile_metric(net_config, train_config, dyn, params, mf_TxF, data, task, row_i,
                         row_j):
  """Negated mean target of the architectures V ranks in its top quantile (lower is better).

  This is what inference relies on: the top of V's ranking on an unseen task. A regression or
  pairwise loss is dominated by telling bad architectures from average ones, which keeps
  improving while the top of the ranking, which transfers less, is being overfitted.
  """
  del train_config, row_j
  value = vn.ValueNet(net_config).apply(params, mf_TxF[task], data.enc_AxE[data.arch_R[row_i]])
  return -tables.top_quantile_mean(value, data.target_R[row_i], jnp.ones(task.shape, bool),
                                   dyn["top_quantile"])


def _loss_metric(net_config, train_config, dyn, params, mf_TxF, data, task, row_i, row_j):
  """The training loss on held-out pairs, without meta-feature dropout."""
  drop = jnp.zeros(task.shape, bool)
  return _batch_loss(net_config, train_config, params, mf_TxF, data, task, row_i, row_j,
                     drop, dyn["top_weight"])[0]


_VALIDATION_METRICS = {"top_quantile": _top_quantile_metric, "loss": _loss_metric}


def holdout_masks(mask_T: jax.Array, train_config: TrainConfig, key: jax.Array):
  """Per-member (fit mask `[M, T]`, held-out mask `[M, T]`) over the training tasks `mask_T`.

  Members rotate through the training tasks in a random order, each holding out
  `holdout_tasks` or, if more are needed for every task to be held out by some member, more
  (k-fold cross-validation, as long as each member still learns from at least half of them).
  With too few tasks to hold any out, every member fits and early-stops on all of them. A pure
  function of the (traced) mask: the number of training tasks need not be static.
  """
  m, k0 = train_config.ensemble_size, train_config.holdout_tasks
  n = mask_T.sum()
  k = jnp.int32(k0)
  if k0 > 0 and m > 1:
    k = jnp.maximum(k0, jnp.minimum(-(-n // m), n // 2))
  # Each training task's position in a random order of the training tasks.
  u_T = jnp.where(mask_T, jax.random.uniform(key, mask_T.shape), 2.0)
  pos_T = jnp.argsort(jnp.argsort(u_T))
  member_M = jnp.arange(m)[:, None]
  held = mask_T & (jnp.mod(pos_T - member_M * k, jnp.maximum(n, 1)) < k)
  rotate = (n > k) & (k > 0)
  held = jnp.where(rotate, held, mask_T)
  fit = jnp.where(rotate, mask_T & ~held, mask_T)
  return fit, held


def _one_standard_error_index(metric_SxM: jax.Array) -> jax.Array:
  """Index of the first setting whose held-out metric (lower is better) is within one paired
  standard error of the best's.

  The "one standard error" rule of cross-validation: among settings the held-out tasks cannot
  tell apart, take the simplest (the settings are ordered simplest first). The comparison is
  paired: every member scores every setting on its own held-out tasks, so the standard error is
  that of the per-member difference to the best setting (the spread between tasks, which a
  difference cancels, would otherwise hide any real gain). NaN members are left out.
  """
  ok_M = jnp.all(jnp.isfinite(metric_SxM), 0)
  n = ok_M.sum()
  metric = jnp.where(ok_M, metric_SxM, 0.0)
  mean_S = metric.sum(1) / jnp.maximum(n, 1)
  best = jnp.argmin(mean_S)
  diff = jnp.where(ok_M, metric - metric[best], 0.0)
  diff_mean = diff.sum(1) / jnp.maximum(n, 1)
  var = jnp.sum(jnp.where(ok_M, (diff - diff_mean[:, None]) ** 2, 0.0), 1) / jnp.maximum(n - 1,
                                                                                         1)
  se = jnp.where(n > 1, jnp.sqrt(var / jnp.maximum(n, 1)), 0.0)
  return jnp.argmax(diff_mean <= se + 1e-7)


class TrainReport(flax.struct.PyTreeNode):
  """What `train` did, as arrays (so that it can be returned from a vmapped simulation)."""

  steps: jax.Array  # int32: optimiser steps run
  train_loss_N: jax.Array  # float32 [evaluations] mean training loss per evaluation (NaN: not run)
  val_loss_N: jax.Array  # float32 [evaluations] mean early-stopping metric (NaN: not run)
  best_val_loss_N: jax.Array  # float32 [evaluations] mean of each member's best so far
  held_MxT: jax.Array  # bool: the tasks each member held out
  val_by_interaction_SxM: jax.Array  # float32: held-out metric at each interaction scale
  val_by_task_effect_SxM: jax.Array  # float32: ... at each task-effect scale


@functools.partial(jax.jit, static_argnames=("net_config", "train_config"))
def train(net_config: vn.ValueNetConfig, train_config: TrainConfig, dyn: dict,
          data: TrainData, mask_T: jax.Array, key: jax.Array) -> tuple[ValueModel, TrainReport]:
  """Trains the ensemble on the tasks of `mask_T`: a pure, jit-compiled function.

  `train_config` is the static part and `dyn` the dynamic part of a `TrainConfig`
  (`tarch.hparams.split`); `net_config` must carry the space's encoding layout. Early stopping
  happens in the graph: a `lax.while_loop` over evaluations, each `eval_every` optimiser steps
  of every member, keeps each member's best parameters and stops after `patience`
  evaluations without improvement of any member (under `jax.vmap` the loop runs until the last
  simulation stops; the finished ones keep their state). Then each optional term is shrunk by
  the scale `shrinkage_rule` picks on the held-out tasks: the interactions first, then the
  meta-feature term.
  """
  tc = train_config
  scaler = FeatureScaler.fit_masked(data.features_TxF, mask_T)
  mf_TxF = scaler(data.features_TxF)
  k_mask, k_init, k_eval, key = jax.random.split(key, 4)
  fit_mask, held = holdout_masks(mask_T, tc, k_mask)
  fit_w = fit_mask.astype(jnp.float32)
  if tc.task_weighting == "results":
    fit_w = fit_w * data.count_T.astype(jnp.float32)
  m = tc.ensemble_size
  params = jax.vmap(lambda k: vn.init_params(
      net_config, k, data.features_TxF.shape[1], data.enc_AxE.shape[1]))(
          jax.random.split(k_init, m))
  optimizer = _optimizer(tc, dyn)
  opt_state = jax.vmap(optimizer.init)(params)
  eval_pairs = jax.vmap(lambda k, w: _sample_pairs(k, data, w, tc.eval_size))(
      jax.random.split(k_eval, m), held.astype(jnp.float32))
  metric_fn = _VALIDATION_METRICS[tc.early_stopping]

  def validation(params_M):
    return jax.vmap(lambda p, t, i, j: metric_fn(net_config, tc, dyn, p, mf_TxF, data, t, i, j))(
        params_M, *eval_pairs)

  def member_step(params, opt_state, key, weight_T):
    k_pairs, k_drop, k_inter = jax.random.split(key, 3)
    task, row_i, row_j = _sample_pairs(k_pairs, data, weight_T, tc.batch_size)
    drop = jax.random.bernoulli(k_drop, dyn["meta_feature_dropout"], task.shape)
    keep_interactions = 1.0 - jax.random.bernoulli(k_inter, dyn["interaction_dropout"])
    grad_fn = jax.value_and_grad(
        lambda p: _batch_loss(net_config, tc, scale_interactions(p, keep_interactions), mf_TxF,
                              data, task, row_i, row_j, drop, dyn["top_weight"]),
        has_aux=True)
    (loss, _), grads = grad_fn(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  num_evals = -(-tc.num_steps // tc.eval_every)

  def step(carry, inputs):
    params, opt_state = carry
    key, active = inputs
    new_params, new_state, loss = jax.vmap(member_step)(
        params, opt_state, jax.random.split(key, m), fit_w)
    if tc.num_steps % tc.eval_every == 0:  # every period is whole: no step to undo
      return (new_params, new_state), loss.mean()
    # Steps past num_steps (in a last, partial evaluation period) change nothing.
    keep = lambda new, old: jnp.where(active, new, old)
    return (jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_state, opt_state)), (
        jnp.where(active, loss.mean(), jnp.nan))

  nan_N = jnp.full((num_evals,), jnp.nan, jnp.float32)
  init = dict(evals=jnp.int32(0), stale=jnp.int32(0), params=params, opt_state=opt_state,
              best_params=params, best_M=jnp.full((m,), jnp.inf, jnp.float32), key=key,
              train_N=nan_N, val_N=nan_N, best_N=nan_N)

  def cond(s):
    return (s["evals"] < num_evals) & (s["stale"] < tc.patience)

  def body(s):
    key, k = jax.random.split(s["key"])
    first = s["evals"] * tc.eval_every
    active = first + jnp.arange(tc.eval_every) < tc.num_steps
    (params, opt_state), loss = jax.lax.scan(
        step, (s["params"], s["opt_state"]), (jax.random.split(k, tc.eval_every), active))
    val_M = validation(params)
    better_M = val_M < s["best_M"]
    best_M = jnp.where(better_M, val_M, s["best_M"])
    best_params = _keep_better(better_M, params, s["best_params"])
    i = s["evals"]
    return dict(evals=i + 1, stale=jnp.where(better_M.any(), 0, s["stale"] + 1), params=params,
                opt_state=opt_state, best_params=best_params, best_M=best_M, key=key,
                train_N=s["train_N"].at[i].set(jnp.nanmean(loss)),
                val_N=s["val_N"].at[i].set(val_M.mean()),
                best_N=s["best_N"].at[i].set(best_M.mean()))

  s = jax.lax.while_loop(cond, body, init)
  best_params = s["best_params"]

  def shrink(params, scales, scaled, active):
    """Params scaled by the entry of `scales` that `shrinkage_rule` picks; the metric `[S, M]`."""
    scales = sorted(scales)
    if not (active and scales):
      return params, jnp.float32(1.0), jnp.zeros((0, m), jnp.float32)
    metric_SxM = jnp.stack([validation(scaled(params, s)) for s in scales])
    if tc.shrinkage_rule == "one_se":
      index = _one_standard_error_index(metric_SxM)
    else:
      index = jnp.argmin(metric_SxM.mean(1))
    scale = jnp.asarray(scales, jnp.float32)[index]
    return scaled(params, scale), scale, metric_SxM

  best_params, inter_scale, inter_SxM = shrink(
      best_params, tc.interaction_scales, scale_interactions, bool(net_config.interaction_hidden))
  best_params, task_scale, task_SxM = shrink(
      best_params, tc.task_effect_scales, scale_task_effects, net_config.use_meta_features)
  model = ValueModel(params=best_params, scaler=scaler, config=net_config,
                     task_effect_scale=task_scale, interaction_scale=inter_scale)
  report = TrainReport(steps=jnp.minimum(s["evals"] * tc.eval_every, tc.num_steps),
                       train_loss_N=s["train_N"], val_loss_N=s["val_N"],
                       best_val_loss_N=s["best_N"], held_MxT=held,
                       val_by_interaction_SxM=inter_SxM, val_by_task_effect_SxM=task_SxM)
  return model, report


def _keep_better(better_M, new_M, old_M):
  """Per member: the new params where it improved, else the old ones."""
  return jax.tree.map(
      lambda new, old: jnp.where(better_M.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
      new_M, old_M)


def with_layout(net_config: vn.ValueNetConfig, space) -> vn.ValueNetConfig:
  """`net_config` with the encoding layout of `space` (what V's features need)."""
  return dataclasses.replace(net_config, encoding_dim=space.dim,
                             numeric_dims=space.numeric_dims)


def task_mask(ds: runs_lib.MetaDataset, train_tasks=None) -> np.ndarray:
  """Bool `[T]` of `train_tasks` (indices or names; default all)."""
  mask_T = np.zeros(ds.num_tasks, bool)
  if train_tasks is None:
    mask_T[:] = True
  else:
    mask_T[ds.task_indices(train_tasks)] = True
  if not mask_T.any():
    raise ValueError("fit needs at least one training task")
  return mask_T


def fit(ds: runs_lib.MetaDataset, net_config: vn.ValueNetConfig, train_config: TrainConfig,
        train_tasks=None, progress: Callable[[dict], None] | None = None, *,
        train_cost_model: bool = True, cost_config=None) -> tuple[ValueModel, list[dict]]:
  """Trains the value-network ensemble on the results of `train_tasks` (the host entry point
  to `train`, followed by the ranker choice of `tarch.ranker`).

  Args:
    ds: the meta-dataset (all tasks; the others are masked out, so shapes do not depend on the
      choice of training tasks and folds share one compiled program).
    net_config: architecture of V.
    train_config: optimisation settings.
    train_tasks: indices or names of the tasks to learn from; default all.
    progress: called, once training is done, with each evaluation's dict (step, train_loss,
      val_loss, best_val_loss; val_loss is the early-stopping metric, lower is better), then
      with the chosen scales, the held-out metric of each scale tried and, with
      `train_config.blend`, the ranker's blend (`tarch.ranker.describe`).
    train_cost_model: when the meta-dataset has a `cost` column, also train the cost model
      (`tarch.cost_model`, for cost-aware inference) with `cost_config` (a `CostConfig`;
      default its defaults).

  Returns:
    The trained `ValueModel` (each member at its best held-out step, its optional terms shrunk
    on the held-out tasks; with `train_config.blend`, the training tasks' table attached and
    the blend chosen by `tarch.ranker.choose`; when the meta-dataset has a `cost` column, a
    `tarch.cost_model.CostModel` of the training tasks' costs attached) and the history, one
    dict per evaluation.
  """
  from tarch import ranker as ranker_lib  # ranker builds on this module

  mask_T = task_mask(ds, train_tasks)
  net_config = with_layout(net_config, ds.space)
  static, dyn = hparams.split(train_config)
  data = prepare_data(ds, train_config.target)
  model, report = train(net_config, static, dyn, data, jnp.asarray(mask_T),
                        jax.random.key(train_config.seed))
  records = []
  report_np = jax.device_get(report)
  for i in range(len(report_np.val_loss_N)):
    if np.isnan(report_np.val_loss_N[i]):
      break
    records.append({"step": min((i + 1) * train_config.eval_every, train_config.num_steps),
                    "train_loss": float(report_np.train_loss_N[i]),
                    "val_loss": float(report_np.val_loss_N[i]),
                    "best_val_loss": float(report_np.best_val_loss_N[i])})
  extra = [{"interaction_scale": float(model.interaction_scale),
            "task_effect_scale": float(model.task_effect_scale)}]
  for name, scales, metric_SxM in (
      ("interaction_scale", train_config.interaction_scales, report_np.val_by_interaction_SxM),
      ("task_effect_scale", train_config.task_effect_scales, report_np.val_by_task_effect_SxM)):
    if len(metric_SxM):  # the held-out metric of each scale tried, mean over members
      extra.append({f"val_loss_by_{name}": dict(zip(sorted(scales), metric_SxM.mean(1).tolist()))})
  if ds.has_cost and train_cost_model:
    from tarch import cost_model as cost_lib  # the cost model builds on this module
    model = model.replace(cost_model=cost_lib.fit(
        ds, cost_lib.CostConfig() if cost_config is None else cost_config,
        train_tasks=np.flatnonzero(mask_T)))
  if train_config.blend:
    table = tables.PercentileTable.build(ds)
    model, choice = ranker_lib.choose(model, table, data.features_TxF, jnp.asarray(mask_T),
                                      report.held_MxT, dyn["top_quantile"])
    extra.append(ranker_lib.describe(jax.device_get(choice)))
  if progress is not None:
    for record in records + extra:
      progress(record)
  return model, records


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
    state["kernel"] = dataclasses.asdict(model.kernel)  # nested dicts, the table's included
  if model.cost_model is not None:
    cost = model.cost_model  # its arrays; its static config goes into value_net.json
    state["cost_model"] = {f.name: getattr(cost, f.name) for f in dataclasses.fields(cost)
                           if f.name != "config"}
    state["cost_model"]["scaler"] = dataclasses.asdict(cost.scaler)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(os.path.join(directory, "state"), state, force=True)
  config = {**dataclasses.asdict(model.config),
            "task_effect_scale": float(model.task_effect_scale),
            "interaction_scale": float(model.interaction_scale),
            "blend": None if model.blend_C is None else np.asarray(model.blend_C).tolist(),
            "cost_model": (None if model.cost_model is None
                           else dataclasses.asdict(model.cost_model.config))}
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
  blend = raw.pop("blend", None)
  cost_config = raw.pop("cost_model", None)
  # Models saved before the blend name their ranker instead: V alone reads as before; the task
  # kernel at a bandwidth chosen by leave-one-task-out has no blend equivalent.
  if raw.pop("ranker", "value_net") != "value_net":
    raise ValueError(f"{directory}: saved by an older tarch whose task-kernel ranker this version "
                     "replaced by a blend (tarch.ranker); fit the model again")
  from tarch import ranker as ranker_lib  # ranker builds on this module
  if blend is not None and len(blend) != len(ranker_lib.COMPONENTS):
    raise ValueError(f"{directory}/value_net.json: field 'blend' has {len(blend)} weights, but "
                     f"this version blends {len(ranker_lib.COMPONENTS)} components "
                     f"{ranker_lib.COMPONENTS}; fit the model again")
  config = vn.ValueNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
  with ocp.StandardCheckpointer() as ckpt:
    state = ckpt.restore(os.path.join(directory, "state"))
  kernel = None
  if "kernel" in state:
    fields = dict(state["kernel"])
    table = fields["table"]  # models saved before the per-task row lists get them derived
    fields["table"] = tables.PercentileTable.create(table["pct_TxA"], table["evaluated_TxA"],
                                                    table["enc_AxE"])
    kernel = task_kernel_lib.TaskKernel(**fields)
  cost = None
  if cost_config is not None:
    from tarch import cost_model as cost_lib
    fields = dict(state["cost_model"])
    fields["scaler"] = FeatureScaler(**fields["scaler"])
    cost = cost_lib.CostModel(**fields, config=cost_lib.CostConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in cost_config.items()}))
  return ValueModel(params=state["params"], scaler=FeatureScaler(**state["scaler"]),
                    config=config, kernel=kernel, cost_model=cost,
                    blend_C=None if blend is None else np.asarray(blend, np.float32), **scales)
