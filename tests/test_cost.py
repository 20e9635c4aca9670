"""Cost-aware inference: the cost model, `infer(cost_weights=, max_cost=)`, fronts, hypervolume,
and the LOTO binary's cost-aware evaluation."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from experiments import loto
from experiments.configs.loto import get_config
from tarch import cost_model, hparams, meta_train, pareto, runs, synthetic
from tarch import infer as infer_lib
from tarch import value_net as vn

NET = vn.ValueNetConfig(interaction_hidden=(16,), task_hidden=(8,))
TRAIN = meta_train.TrainConfig(ensemble_size=2, num_steps=60, eval_every=30, batch_size=32,
                               eval_size=64)
INFER = infer_lib.InferConfig(num_restarts=8, num_steps=30, top_k=5)
WEIGHTS = (0.0, 0.25, 1.0, 4.0, 16.0)


@pytest.fixture(scope="module")
def models(synthetic_ds):
  """{ranker: model fitted on tasks 0-4} for V alone and for the blend."""
  return {blend: meta_train.fit(synthetic_ds, NET, dataclasses.replace(TRAIN, blend=blend),
                                train_tasks=range(5))[0]
          for blend in (False, True)}


def _features(ds, task=5):
  return ds.features_TxF[task]


def test_cost_model_predicts_a_held_out_tasks_costs(synthetic_ds):
  # The synthetic cost is exp(sum of the encoding): the same function on every task.
  model = cost_model.fit(synthetic_ds, train_tasks=range(5))
  rows = synthetic_ds.task_R == 5
  enc = synthetic_ds.enc_AxE[synthetic_ds.arch_R[rows]]
  predicted = model.predict(_features(synthetic_ds), enc)
  assert np.all(predicted >= 0)
  assert scipy.stats.spearmanr(predicted, synthetic_ds.cost_R[rows])[0] > 0.9
  assert float(model.task_weight) in cost_model.CostConfig().task_weights


def test_the_cost_model_is_pure_and_masks_tasks(synthetic_ds):
  """A masked-out task's costs do not matter; the mask may be traced (vmapped)."""
  table, floor = cost_model.log_cost_table(synthetic_ds)
  config = cost_model.CostConfig(hidden=(8,), num_steps=20, batch_size=16, members=2)
  features, enc = (jnp.asarray(synthetic_ds.features_TxF, jnp.float32),
                   jnp.asarray(synthetic_ds.enc_AxE, jnp.float32))
  garbage = table.copy()
  garbage[5] = np.where(np.isfinite(table[5]), 1e3, np.nan)  # task 5's costs, scrambled
  masks = jnp.asarray([[True] * 5 + [False], [False] + [True] * 5])
  key = jax.random.key(0)
  batched = jax.vmap(lambda m: cost_model.train(config, features, enc, jnp.asarray(table),
                                                jnp.float32(floor), m, key))(masks)
  scrambled = cost_model.train_jit(config, features, enc, jnp.asarray(garbage),
                                   jnp.float32(floor), masks[0], key)
  first = jax.tree.map(lambda x: x[0], batched)
  f = features[5]
  np.testing.assert_allclose(first.predict_log(f, enc[:7]), scrambled.predict_log(f, enc[:7]),
                             rtol=1e-5, atol=1e-5)
  second = jax.tree.map(lambda x: x[1], batched)
  assert not np.allclose(first.predict_log(f, enc[:7]), second.predict_log(f, enc[:7]))


def test_one_member_trains_on_every_task(synthetic_ds):
  model = cost_model.fit(synthetic_ds, cost_model.CostConfig(members=1), train_tasks=range(5))
  rows = synthetic_ds.task_R == 5
  enc = synthetic_ds.enc_AxE[synthetic_ds.arch_R[rows]]
  predicted = model.predict(_features(synthetic_ds), enc)
  assert scipy.stats.spearmanr(predicted, synthetic_ds.cost_R[rows])[0] > 0.9
  assert float(model.task_weight) == 0.0  # nothing held out: no evidence for the task-aware part


@pytest.mark.parametrize("blend", [False, True])
def test_weight_zero_reproduces_the_plain_pick(synthetic_ds, models, blend):
  model = models[blend]
  assert model.ranker == ("blend" if blend else "value_net")
  key = jax.random.key(3)
  plain = infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds), key, INFER)
  front = infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds), key, INFER,
                          cost_weights=[0.0])
  assert front.architectures == plain.architectures[:1]
  np.testing.assert_array_equal(front.predicted, plain.predicted[:1])
  assert front.cost_weights == [(0.0,)]
  # Among several weights, weight 0 takes the best value any weight's ascent found.
  several = infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds), key, INFER,
                            cost_weights=WEIGHTS)
  zero = [p for p, ws in zip(several.predicted, several.cost_weights) if 0.0 in ws]
  assert zero == [several.predicted.max()] and zero[0] >= plain.predicted[0]


def test_weight_zero_leaves_the_ascent_unchanged(synthetic_ds, models):
  model = models[False]
  static, dyn = hparams.split(INFER)
  f = jnp.asarray(_features(synthetic_ds), jnp.float32)
  key = jax.random.key(1)
  plain = infer_lib.infer_arrays(synthetic_ds.space, static, dyn, model, f, key)
  zero = infer_lib.infer_arrays(synthetic_ds.space, static, dyn, model, f, key,
                                cost_weight=jnp.float32(0.0))
  for a, b in zip(plain, zero):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("blend", [False, True])
@pytest.mark.parametrize("pool", [False, True])
def test_the_front_is_non_dominated_and_cost_falls_with_the_weight(synthetic_ds, models, blend,
                                                                   pool):
  model = models[blend]
  pool_PxE = synthetic_ds.enc_AxE if pool else None
  front = infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds), jax.random.key(0),
                          INFER, pool_PxE=pool_PxE, cost_weights=WEIGHTS)
  assert len(front.architectures) >= 2  # the weights reach from the best to the cheapest
  assert pareto.pareto_mask(front.predicted, front.predicted_cost).all()
  assert np.all(np.diff(front.predicted_cost) >= 0) and np.all(np.diff(front.predicted) > 0)
  cost_of = {w: c for ws, c in zip(front.cost_weights, front.predicted_cost) for w in ws}
  assert sorted(cost_of) == sorted(WEIGHTS)  # every weight's pick is on the front
  costs = [cost_of[w] for w in sorted(WEIGHTS)]
  assert all(b <= a for a, b in zip(costs, costs[1:]))
  if pool:
    np.testing.assert_array_equal(synthetic_ds.enc_AxE[front.pool_indices], front.encodings)
  if pool and blend:  # the candidates are the whole pool: no pool member beats a front point
    value = np.asarray(model.score(_features(synthetic_ds), synthetic_ds.enc_AxE))
    cost = model.cost_model.predict(_features(synthetic_ds), synthetic_ds.enc_AxE)
    for v, c in zip(front.predicted, front.predicted_cost):
      no_worse = (value >= v - 1e-6) & (cost <= c * (1 + 1e-9))
      beats = no_worse & ((value > v + 1e-6) | (cost < c * (1 - 1e-9)))
      assert not beats.any()


def test_max_cost_is_a_hard_budget(synthetic_ds, models):
  model = models[False]
  f = _features(synthetic_ds)
  budget = float(np.median(synthetic_ds.cost_R))
  picked = infer_lib.infer(model, synthetic_ds.space, f, jax.random.key(0), INFER,
                           max_cost=budget)
  assert len(picked.architectures) >= 1 and np.all(picked.predicted_cost <= budget)
  assert np.all(np.diff(picked.predicted) <= 0)  # best first
  np.testing.assert_allclose(picked.predicted_cost,
                             model.cost_model.predict(f, picked.encodings), rtol=1e-6)
  with pytest.raises(ValueError, match="no candidate is predicted to cost at most"):
    infer_lib.infer(model, synthetic_ds.space, f, jax.random.key(0), INFER, max_cost=0.0)


def test_bad_weights_and_budgets_are_named(synthetic_ds, models):
  f, space = _features(synthetic_ds), synthetic_ds.space
  for weights in ([], [-1.0], [np.nan]):
    with pytest.raises(ValueError, match="cost_weights must be one or more finite weights"):
      infer_lib.infer(models[False], space, f, jax.random.key(0), INFER, cost_weights=weights)
  with pytest.raises(ValueError, match="max_cost must be a finite cost >= 0"):
    infer_lib.infer(models[False], space, f, jax.random.key(0), INFER, max_cost=-1.0)


def test_without_a_cost_column_cost_aware_calls_fail_clearly(synthetic_frames, tmp_path):
  space, runs_df, tasks_df = synthetic_frames
  ds = runs.from_frames(space, runs_df.drop(columns="cost"), tasks_df)
  model = meta_train.fit(ds, NET, TRAIN, train_tasks=range(5))[0]
  assert model.cost_model is None
  plain = infer_lib.infer(model, space, _features(ds), jax.random.key(0), INFER)
  assert plain.architectures  # plain inference keeps working
  with pytest.raises(ValueError, match="without a `cost` column"):
    infer_lib.infer(model, space, _features(ds), jax.random.key(0), INFER, cost_weights=[1.0])
  with pytest.raises(ValueError, match="has no `cost` column"):
    cost_model.fit(ds)
  path = tmp_path / "no_cost"
  runs.write_meta_dataset(path, space, runs_df.drop(columns="cost"), tasks_df, runs_format="csv")
  with pytest.raises(ValueError, match="needs a meta-dataset with a `cost` column"):
    loto.run(get_config("tiny,cost"), str(tmp_path / "run"), data_dir=str(path))


def test_save_and_restore_keep_the_cost_model(synthetic_ds, models, tmp_path):
  model = models[True]
  meta_train.save(model, tmp_path / "model")
  restored = meta_train.restore(tmp_path / "model")
  f, enc = _features(synthetic_ds), synthetic_ds.enc_AxE[:9]
  np.testing.assert_array_equal(restored.cost_model.predict(f, enc),
                                model.cost_model.predict(f, enc))
  assert restored.cost_model.config == model.cost_model.config


def test_pareto_mask_and_hypervolume_by_hand():
  value, cost = np.array([1.0, 2.0, 2.0, 3.0, 0.5]), np.array([1.0, 2.0, 3.0, 3.0, 1.0])
  # (2, 3) is beaten by (3, 3) and (0.5, 1) by (1, 1); the others trade value for cost.
  np.testing.assert_array_equal(pareto.pareto_mask(value, cost), [1, 1, 0, 1, 0])
  assert pareto.hypervolume([1.0], [1.0]) == 1.0
  assert pareto.hypervolume([], []) == 0.0
  # Two rectangles [0,1]x[0,0.5] and [0,0.5]x[0,1] overlap in a quarter: 0.5 + 0.5 - 0.25.
  assert pareto.hypervolume([1.0, 0.5], [0.5, 1.0]) == pytest.approx(0.75)
  # A dominated point adds nothing; values outside [0, 1] are clipped.
  assert pareto.hypervolume([1.0, 0.5, 0.2], [0.5, 1.0, 0.2]) == pytest.approx(0.75)
  assert pareto.hypervolume([2.0], [-1.0]) == 0.0


def test_loto_cost_aware_outputs_and_resume(synthetic_dir, tmp_path):
  workdir = str(tmp_path / "run")
  config = get_config("tiny,cost")
  loto.run(config, workdir, data_dir=synthetic_dir)
  with open(os.path.join(workdir, "loto_pareto.json")) as f:
    summary = json.load(f)
  assert set(summary["methods"]) == {"tarch", "best_on_average", "random"}
  for stats in summary["methods"].values():
    assert set(stats) == {"mean_hypervolume", "num_tasks"} and stats["num_tasks"] == 6
    assert 0 <= stats["mean_hypervolume"] <= 1
  rows = pd.read_csv(os.path.join(workdir, "loto_pareto.csv"))
  assert set(rows["kind"]) == {"front", "budget"}
  assert (rows["regret"] >= 0).all()
  assert os.path.getsize(os.path.join(workdir, "loto_pareto.png")) > 1000
  stamp = {n: os.path.getmtime(os.path.join(workdir, "folds_cost", n))
           for n in os.listdir(os.path.join(workdir, "folds_cost"))}
  loto.run(config, workdir, data_dir=synthetic_dir)  # reuses every cost-aware chunk
  assert {n: os.path.getmtime(os.path.join(workdir, "folds_cost", n))
          for n in os.listdir(os.path.join(workdir, "folds_cost"))} == stamp
  with open(os.path.join(workdir, "loto_pareto.json")) as f:
    assert json.load(f) == summary


def test_unknown_config_variant_is_named():
  with pytest.raises(ValueError, match="unknown config variant"):
    get_config("tiny,costs")


def test_the_simulations_picks_break_ties_to_the_cheaper_member():
  score, cost = jnp.array([1.0, 1.0, 0.5, 9.0]), jnp.array([2.0, 1.0, 0.0, -5.0])
  member = jnp.array([True, True, True, False])  # the best and cheapest is not a member
  picks = pareto._picks(score, cost, member, jnp.array([0.0, 100.0]), member)
  np.testing.assert_array_equal(picks, [1, 2])
