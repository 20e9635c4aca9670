"""A task simulation: one leave-one-task-out fold, end to end, as one pure function.

`simulate(static, dyn, data, task)` meta-trains the value-network ensemble on every task but
`task` (a mask, so every fold has the same shapes), chooses the ranker on held-out training
tasks (`tarch.ranker`), lets every method pick an architecture from the held-out task's pool
(the architectures evaluated on it; their scores hidden) using only its meta-features, and
scores each pick by the task's test scores. It is a function of device arrays, a task index and
the dynamic hyperparameters (`dyn`, including the seed), so `tarch.sweep` `jax.vmap`s it over
held-out tasks x seeds x hyperparameter values and shards that axis over devices; the static
part (shapes, ensemble size, loss kind, network layout) is one hashable `Static`.

Methods (`METHODS`), judged on the held-out task's `test_score`:
- `tarch`: gradient ascent through V restricted to the pool (`tarch.infer.infer_arrays`) when
  `tarch.ranker` chose V alone, else the pool ranked by the chosen blend;
- `tarch_rank`: the chosen ranking (V or the blend) scores the whole pool, its best is taken;
- `best_on_average`: the best mean per-task percentile over the training tasks;
- `knn`: the best of the training task nearest in standardised meta-features;
- `task_kernel`: the best kernel-weighted mean percentile (bandwidth chosen on training tasks);
- `oracle`: the pool's best test score.
Random search (`random_k`) does not pick; its exact expectation is computed on the host
(`tarch.metrics.random_k_expected`) by the reporting layer.

Shape letters: T tasks, A architectures, F meta-features, E encoding width, K methods.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tarch import baselines, cost_model, hparams, infer, meta_train, ranker, tables, task_kernel
from tarch import runs as runs_lib
from tarch import value_net as vn
from tarch.space import Space

METHODS = ("tarch", "tarch_rank", "best_on_average", "knn", "task_kernel", "oracle")


@dataclasses.dataclass(frozen=True)
class Static:
  """The static part of a simulation: hashable, a static argument of the compiled program."""

  space: Space
  value_net: vn.ValueNetConfig  # with the space's encoding layout
  train: meta_train.TrainConfig  # static part (`hparams.split`)
  infer: infer.InferConfig  # static part


def split(space: Space, net: vn.ValueNetConfig, train: meta_train.TrainConfig,
          infer_config: infer.InferConfig) -> tuple[Static, dict]:
  """(`Static`, dyn) of full library configs; dyn is `{"train": {...}, "infer": {...}}`."""
  train_static, train_dyn = hparams.split(train)
  infer_static, infer_dyn = hparams.split(infer_config)
  return (Static(space, meta_train.with_layout(net, space), train_static, infer_static),
          {"train": train_dyn, "infer": infer_dyn})


class Data(flax.struct.PyTreeNode):
  """Fold-independent device arrays of one meta-dataset."""

  train: meta_train.TrainData
  table: tables.PercentileTable
  test_TxA: jax.Array  # float32 (test score - the task's best) / its range: 0 is the best, -1
  # the worst (masked by table.evaluated_TxA)
  score_TxA: jax.Array  # float32 the validation scores (`score`), shifted and scaled likewise:
  # what a simulated training on the held-out task returns
  group_T: jax.Array  # int32 each task's group: a held-out task's whole group is left out of
  # training (default: each task its own group, leave-one-task-out)
  log_cost_TxA: jax.Array  # float32 log(cost + floor) (`tarch.cost_model.log_cost_table`), NaN
  # where not evaluated or when the meta-dataset has no cost column
  cost_floor: jax.Array  # float32 the floor added before the log

  @classmethod
  def build(cls, ds: runs_lib.MetaDataset, target: str, groups=None) -> Data:
    """`groups`: optional int per task (e.g. the dataset a generated task was drawn from), so
    that holding out a task holds out its siblings too (leave-one-group-out)."""
    group_T = np.arange(ds.num_tasks) if groups is None else np.asarray(groups)
    if group_T.shape != (ds.num_tasks,) or not np.issubdtype(group_T.dtype, np.integer):
      raise ValueError(f"groups must be {ds.num_tasks} integers, one per task; got {groups!r}")

    def scaled(values_R):
      # Shifted and scaled to [-1, 0] per task in float64 before the cast, so that float32 keeps
      # the differences that regret and percentile are made of (both are invariant to a task's
      # offset and scale), whatever the scores' offset and magnitude.
      best_T = np.full(ds.num_tasks, -np.inf)
      np.maximum.at(best_T, ds.task_R, values_R)
      worst_T = np.full(ds.num_tasks, np.inf)
      np.minimum.at(worst_T, ds.task_R, values_R)
      range_T = best_T - worst_T
      range_T = np.where(range_T > 0, range_T, 1.0)
      out_TxA = np.zeros((ds.num_tasks, ds.num_archs))  # 0 where a task did not evaluate one
      out_TxA[ds.task_R, ds.arch_R] = (values_R - best_T[ds.task_R]) / range_T[ds.task_R]
      return jnp.asarray(out_TxA, jnp.float32)

    if ds.has_cost:
      log_cost_TxA, floor = cost_model.log_cost_table(ds)
    else:
      log_cost_TxA, floor = np.full((ds.num_tasks, ds.num_archs), np.nan, np.float32), 1.0
    return cls(train=meta_train.prepare_data(ds, target), table=tables.PercentileTable.build(ds),
               test_TxA=scaled(ds.test_score_R), score_TxA=scaled(ds.score_R),
               group_T=jnp.asarray(group_T, jnp.int32), log_cost_TxA=jnp.asarray(log_cost_TxA),
               cost_floor=jnp.asarray(floor, jnp.float32))


class Result(flax.struct.PyTreeNode):
  """One simulation's outcome; the `_K` fields follow `METHODS`."""

  pick_K: jax.Array  # int32 architecture index (into the meta-dataset) of each method's pick
  regret_K: jax.Array  # float32 normalised regret of the pick on the held-out task
  percentile_K: jax.Array  # float32 fraction of the pool with test score <= the pick's
  predicted_K: jax.Array  # float32 the ranker's score of the pick (NaN for non-tarch methods)
  blend_C: jax.Array  # float32 weights of `tarch.ranker.COMPONENTS` in tarch's ranking (V
  # alone, [1, 0, 0, 0]: its ascent picks)
  bandwidth: jax.Array  # float32 the task_kernel baseline's relative bandwidth, chosen by
  # leave-one-task-out over the training tasks (inf: equal weights)
  train_steps: jax.Array  # int32 optimiser steps run before early stopping
  best_val_loss: jax.Array  # float32 mean over members of the best early-stopping metric
  task_effect_scale: jax.Array  # float32 shrinkage chosen for the meta-feature term
  interaction_scale: jax.Array  # float32 ... and for the interaction term


def regret_and_percentile(chosen, test_A, pool_A):
  """Normalised regret and percentile (`tarch.metrics`' definitions) of chosen test scores,
  given the pool's test scores shifted so that its best is 0."""
  t = jnp.where(pool_A, test_A, jnp.nan)
  median, worst = jnp.nanmedian(t), jnp.nanmin(t)
  regret = jnp.abs(jnp.where(  # >= 0 by construction; abs turns -0.0 into 0.0
      median < 0, chosen / median,
      # Degenerate pool (at least half of it ties at the best): shortfalls scaled by the range.
      jnp.where(worst < 0, jnp.where(chosen >= 0, 0.0, chosen / worst), 0.0)))
  percentile = jnp.sum(pool_A & (test_A <= chosen[..., None]), -1) / pool_A.sum()
  return regret, percentile


class Fold(flax.struct.PyTreeNode):
  """A fold's trained model and zero-shot ranking of the held-out task's pool."""

  model: meta_train.ValueModel  # with the training tasks' table and the chosen blend attached
  report: meta_train.TrainReport
  mask_T: jax.Array  # bool: the training tasks
  pool_A: jax.Array  # bool: the architectures the held-out task evaluated
  value_A: jax.Array  # float32 V's score of every architecture for the held-out task
  score_A: jax.Array  # float32 what tarch ranks by (V alone, or the chosen blend)
  tarch_pick: jax.Array  # int32 tarch's zero-shot pick (V's ascent when V ranks alone)


def fold(static: Static, dyn: dict, data: Data, task: jax.Array) -> Fold:
  """Meta-trains on every task outside `task`'s group, chooses the ranker and ranks the held-out
  task's pool from its meta-features alone (pure; what every simulation starts from)."""
  mask_T = data.group_T != data.group_T[task]
  # As `meta_train.fit(seed=s)` trains, whatever the fold; the ascent's starts differ per task.
  k_train = jax.random.key(dyn["train"]["seed"])
  k_infer = jax.random.fold_in(k_train, task)
  model, report = meta_train.train(static.value_net, static.train, dyn["train"], data.train,
                                   mask_T, k_train)
  features_TxF = data.train.features_TxF
  model, _ = ranker.choose(model, data.table, features_TxF, mask_T, report.held_MxT,
                           dyn["train"]["top_quantile"], enabled=static.train.blend)
  pool_A = data.table.evaluated_TxA[task]
  features_F = features_TxF[task]
  enc_AxE = data.train.enc_AxE

  value_A = vn.lower_bound(
      vn.apply_fused(model.config, vn.fuse_members(model.config, model.params),
                     model.task_embeddings(features_F), enc_AxE), dyn["infer"]["pessimism"])
  z_F = model.scaler.standardize(features_F)
  blend_A = ranker.blend_scores(
      model.blend_C, ranker.table_components(model.kernel, z_F, value_A), pool_A)
  use_blend = model.blend_C[0] < 1  # else V ranks alone, and its ascent picks
  score_A = jnp.where(use_blend, blend_A, value_A)
  _, _, rows, valid = infer.infer_arrays(  # as `tarch.infer` with a pool: no support term
      static.space, static.infer, dyn["infer"], model, features_F, k_infer, enc_AxE, pool_A)
  rank_pick = baselines.best_in_pool(score_A, pool_A)
  ascent_pick = jnp.where(valid[0], rows[0], rank_pick).astype(jnp.int32)
  return Fold(model=model, report=report, mask_T=mask_T, pool_A=pool_A, value_A=value_A,
              score_A=score_A, tarch_pick=jnp.where(use_blend, rank_pick, ascent_pick))


def simulate(static: Static, dyn: dict, data: Data, task: jax.Array) -> Result:
  """One leave-one-task-out fold with `task` (and its group) held out (pure; jit, vmap and
  shard it)."""
  f = fold(static, dyn, data, task)
  model, mask_T, pool_A = f.model, f.mask_T, f.pool_A
  z_TxF = model.scaler.standardize(data.train.features_TxF)
  kernel, _, _ = task_kernel.choose_bandwidth(model.kernel, dyn["train"]["top_quantile"])

  picks = {
      "tarch": f.tarch_pick,
      "tarch_rank": baselines.best_in_pool(f.score_A, pool_A),
      "best_on_average": baselines.best_on_average(data.table, mask_T, pool_A),
      "knn": baselines.knn(data.table, z_TxF, mask_T, task, pool_A),
      "task_kernel": baselines.best_in_pool(kernel.scores(z_TxF[task]), pool_A),
      "oracle": baselines.best_in_pool(data.test_TxA[task], pool_A),
  }
  pick_K = jnp.stack([picks[m] for m in METHODS])
  regret_K, percentile_K = regret_and_percentile(data.test_TxA[task][pick_K],
                                                 data.test_TxA[task], pool_A)
  is_tarch = jnp.array([m.startswith("tarch") for m in METHODS])
  return Result(
      pick_K=pick_K, regret_K=regret_K, percentile_K=percentile_K,
      predicted_K=jnp.where(is_tarch, f.score_A[pick_K], jnp.nan), blend_C=model.blend_C,
      bandwidth=kernel.bandwidth, train_steps=f.report.steps,
      best_val_loss=jnp.nanmin(f.report.best_val_loss_N),  # non-increasing
      task_effect_scale=jnp.asarray(model.task_effect_scale, jnp.float32),
      interaction_scale=jnp.asarray(model.interaction_scale, jnp.float32))


simulate_jit = jax.jit(simulate, static_argnums=0)


def simulate_batch(static: Static, dyn: dict, data: Data, task_N: jax.Array) -> Result:
  """`simulate` vmapped over a leading axis of `task_N` and of every leaf of `dyn`."""
  return jax.vmap(simulate, in_axes=(None, 0, None, 0))(static, dyn, data, task_N)
