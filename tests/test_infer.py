"""tarch.infer: gradient ascent, projection to a pool, deduplication, compile-once."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tarch import hparams
from tarch import infer as infer_lib
from tarch import meta_train, ranker
from tarch import value_net as vn
from tarch.space import Categorical, Space

CONFIG = infer_lib.InferConfig(num_restarts=16, num_steps=60, top_k=5)


@pytest.fixture(scope="module")
def model(synthetic_ds):
  net = vn.ValueNetConfig(interaction_hidden=(32, 32), task_hidden=(8,))
  # The ascent is under test here, so V ranks alone (the blend is tested below).
  train = meta_train.TrainConfig(ensemble_size=2, num_steps=200, eval_every=50, batch_size=64,
                                 eval_size=256, blend=False)
  return meta_train.fit(synthetic_ds, net, train, train_tasks=range(5))[0]


def _dyn(config):
  return hparams.split(config)[1]


def _value_n(model, g):
  return lambda enc_NxE: vn.lower_bound(
      vn.apply_embedded(model.config, model.params, g, enc_NxE), 0.0)


def _features(ds, task=5):
  return jnp.asarray(ds.features_TxF[task], jnp.float32)


def test_ascent_increases_value(synthetic_ds, model):
  space = synthetic_ds.space
  mf = model.scaler(_features(synthetic_ds))
  theta = jax.random.normal(jax.random.key(1), (8, space.dim))
  objective = lambda enc: model.value(mf, enc)
  optimum = jax.vmap(lambda th: infer_lib._ascend(
      objective, CONFIG, _dyn(CONFIG), th, jnp.zeros(space.dim), space.relax))(theta)
  value = jax.vmap(objective)
  before = value(space.relax(theta, CONFIG.temperature_start))
  after = value(optimum)
  assert np.all(np.asarray(after) > np.asarray(before))


def test_infer_returns_distinct_valid_architectures_best_first(synthetic_ds, model):
  space = synthetic_ds.space
  result = infer_lib.infer(model, space, _features(synthetic_ds), jax.random.key(0), CONFIG)
  assert 1 <= len(result.architectures) <= CONFIG.top_k
  assert result.pool_indices is None
  for arch in result.architectures:
    space.validate(arch)
  keys = [space.format(a) for a in result.architectures]
  assert len(set(keys)) == len(keys)
  assert np.all(np.diff(result.predicted) <= 1e-6)
  # The reported value is the ensemble's value of the returned (discrete) architecture.
  np.testing.assert_allclose(
      model.predict(_features(synthetic_ds), jnp.asarray(result.encodings)), result.predicted,
      rtol=1e-5, atol=1e-5)


def test_infer_beats_random_architectures(synthetic_ds, model):
  space = synthetic_ds.space
  result = infer_lib.infer(model, space, _features(synthetic_ds), jax.random.key(0), CONFIG)
  random_enc = space.sample(jax.random.key(3), 256)
  random_values = np.asarray(model.predict(_features(synthetic_ds), random_enc))
  assert result.predicted[0] >= np.quantile(random_values, 0.95)


def test_infer_with_pool_returns_only_pool_members(synthetic_ds, model):
  rows = synthetic_ds.task_rows(5)
  pool = synthetic_ds.enc_AxE[synthetic_ds.arch_R[rows]]
  result = infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds),
                           jax.random.key(0), CONFIG, pool_PxE=pool)
  assert len(set(result.pool_indices.tolist())) == len(result.pool_indices)
  np.testing.assert_array_equal(result.encodings, pool[result.pool_indices])
  values = np.asarray(model.predict(_features(synthetic_ds), jnp.asarray(pool)))
  np.testing.assert_allclose(values[result.pool_indices], result.predicted, rtol=1e-5,
                             atol=1e-5)


def test_pool_restricts_ascent_to_the_values_it_uses(synthetic_ds, model):
  space = synthetic_ds.space
  enc = synthetic_ds.enc_AxE
  op_block = slice(*space.slices[0])
  pool = enc[enc[:, op_block][:, :2].sum(1) > 0]  # only the first two ops
  bias = np.asarray(infer_lib._pool_bias(space, jnp.asarray(pool), jnp.ones(len(pool), bool)))
  assert np.all(bias[op_block][:2] == 0) and np.all(bias[op_block][2:] < -1e8)
  # As a mask over the whole table: the same bias.
  member = jnp.asarray(enc[:, op_block][:, :2].sum(1) > 0)
  np.testing.assert_array_equal(infer_lib._pool_bias(space, jnp.asarray(enc), member), bias)
  assert np.all(bias[space.slices[2][0]:] == 0)  # numeric entries are never masked
  result = infer_lib.infer(model, space, _features(synthetic_ds), jax.random.key(0), CONFIG,
                           pool_PxE=pool)
  assert {a["op"] for a in result.architectures} <= set(space.choices[0].values[:2])


def test_infer_compiles_once_for_same_shapes(synthetic_ds, model):
  config = dataclasses.replace(CONFIG, num_steps=7)  # a shape no other test compiles
  before = infer_lib._infer_jit._cache_size()
  for seed, task, lr in [(0, 4, 0.1), (1, 5, 0.05), (2, 3, 0.2)]:  # dynamic: no recompilation
    infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds, task),
                    jax.random.key(seed), dataclasses.replace(config, learning_rate=lr))
  assert infer_lib._infer_jit._cache_size() == before + 1


def test_infer_rejects_wrong_shapes(synthetic_ds, model):
  with pytest.raises(ValueError, match="expected 3 meta-features"):
    infer_lib.infer(model, synthetic_ds.space, jnp.zeros(4), jax.random.key(0), CONFIG)
  with pytest.raises(ValueError, match="pool must have shape"):
    infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds), jax.random.key(0),
                    CONFIG, pool_PxE=np.zeros((3, 2)))


def test_infer_rejects_bad_inputs(synthetic_ds, model):
  features = _features(synthetic_ds)
  with pytest.raises(ValueError, match="meta-features must be finite"):
    infer_lib.infer(model, synthetic_ds.space, features.at[0].set(jnp.nan), jax.random.key(0),
                    CONFIG)
  other = Space("other", (Categorical("x", ("a", "b")),))
  with pytest.raises(ValueError, match="trained on an encoding of width"):
    infer_lib.infer(model, other, features, jax.random.key(0), CONFIG)
  with pytest.raises(ValueError, match="temperature_end > 0"):
    infer_lib.InferConfig(temperature_end=0.0)
  with pytest.raises(ValueError, match="support_weight >= 0"):
    infer_lib.InferConfig(support_weight=-1.0)
  with pytest.raises(ValueError, match="support_members >= 1"):
    infer_lib.InferConfig(support_members=0)
  bad_pool = np.array(synthetic_ds.enc_AxE[:4])
  bad_pool[1, 0] = np.nan
  with pytest.raises(ValueError, match="pool encodings must be finite"):
    infer_lib.infer(model, synthetic_ds.space, features, jax.random.key(0), CONFIG,
                    pool_PxE=bad_pool)


@pytest.mark.parametrize("groups, scrambled_task", [
    (None, 0),  # leave-one-task-out: the held-out task itself
    ([0, 0, 1, 2, 3, 4], 1),  # leave-one-group-out: a sibling in the held-out task's group
])
def test_held_out_scores_never_reach_the_methods(synthetic_ds, groups, scrambled_task):
  """LOTO leakage check: scrambling the scores of the held-out task (or of a task in its group)
  changes no choice (the blend, the shrinkage, the baselines' bandwidth) and no pick but the
  oracle's."""
  from tarch import simulate
  held_out = 0
  rows = synthetic_ds.task_rows(scrambled_task)
  rng = np.random.default_rng(0)
  scrambled = dataclasses.replace(
      synthetic_ds,
      score_R=synthetic_ds.score_R.copy(), test_score_R=synthetic_ds.test_score_R.copy())
  scrambled.score_R[rows] = 10 * rng.permutation(synthetic_ds.score_R[rows])
  scrambled.test_score_R[rows] = rng.permutation(synthetic_ds.test_score_R[rows]) - 3
  net = vn.ValueNetConfig(task_hidden=(8,))
  train = meta_train.TrainConfig(ensemble_size=2, num_steps=60, eval_every=30, batch_size=64,
                                 eval_size=128)
  static, dyn = simulate.split(synthetic_ds.space, net, train,
                               infer_lib.InferConfig(num_restarts=8, num_steps=20))
  choices = []
  for ds in (synthetic_ds, scrambled):
    result = jax.device_get(simulate.simulate_jit(
        static, dyn, simulate.Data.build(ds, train.target, groups), jnp.int32(held_out)))
    choices.append((result.pick_K[:-1], result.blend_C, result.bandwidth,  # all but the oracle
                    result.task_effect_scale, result.interaction_scale, result.train_steps,
                    result.best_val_loss))  # moves if any scrambled score reaches training
  for before, after in zip(*choices):
    np.testing.assert_array_equal(before, after)


def _log_density(enc_NxE, support_SxE, bandwidth):
  d2 = ((np.asarray(enc_NxE)[:, None] - np.asarray(support_SxE)[None])**2).sum(-1)
  return np.log(np.exp(-0.5 * d2 / float(bandwidth)**2).mean(1))


def test_support_term_trades_value_for_support_density(synthetic_ds, model):
  space = synthetic_ds.space
  rows = synthetic_ds.task_rows(5)
  support = jnp.asarray(synthetic_ds.enc_AxE[synthetic_ds.arch_R[rows]][::4])
  mf = model.scaler(_features(synthetic_ds))
  g = vn.task_embeddings(model.config, model.params, mf)
  theta = jax.random.normal(jax.random.key(1), (16, space.dim))

  members = jnp.ones(support.shape[0], bool)

  def ascend(weight):
    config = dataclasses.replace(CONFIG, num_steps=200, support_weight=weight)
    term = infer_lib._support_objective(config, _value_n(model, g), support, members)
    value = lambda enc_E: _value_n(model, g)(enc_E[None])[0]
    objective = functools.partial(infer_lib._with_support, value, term, weight)
    optimum = jax.vmap(lambda th: infer_lib._ascend(
        objective, config, _dyn(config), th, jnp.zeros(space.dim), space.relax))(theta)
    value = np.asarray(jax.vmap(lambda enc: model.value(mf, enc))(optimum))
    return _log_density(optimum, support, term[3]).mean(), value.mean()

  free_density, free_value = ascend(0.0)
  held_density, held_value = ascend(10.0)
  assert held_density > free_density + 0.2
  assert held_value < free_value  # the pull costs value: it is a trade-off, not a free lunch


def test_open_space_inference_near_a_support_set(synthetic_ds, model):
  space = synthetic_ds.space
  support = synthetic_ds.enc_AxE[::8]
  bandwidth = infer_lib._neighbour_distance(jnp.asarray(support), jnp.ones(len(support), bool))
  config = dataclasses.replace(CONFIG, support_weight=10.0)
  far = infer_lib.infer(model, space, _features(synthetic_ds), jax.random.key(0), CONFIG)
  near = infer_lib.infer(model, space, _features(synthetic_ds), jax.random.key(0), config,
                         support_SxE=support)
  assert near.pool_indices is None  # the support does not restrict the answers to its members
  assert (_log_density(near.encodings, support, bandwidth).mean()
          > _log_density(far.encodings, support, bandwidth).mean())
  with pytest.raises(ValueError, match="support must have shape"):
    infer_lib.infer(model, space, _features(synthetic_ds), jax.random.key(0), config,
                    support_SxE=support[:, :3])


def test_neighbour_distance_is_the_median_nearest_member_distance():
  pool = jnp.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
  every = lambda x: jnp.ones(x.shape[0], bool)
  # Nearest-member distances 1, 1, 2, 4: median 1.5.
  assert float(infer_lib._neighbour_distance(pool, every(pool))) == pytest.approx(1.5)
  # Duplicates are not neighbours; a pool of one distinct member gets bandwidth 1.
  twice = jnp.concatenate([pool, pool])
  assert float(infer_lib._neighbour_distance(twice, every(twice))) == pytest.approx(1.5)
  assert float(infer_lib._neighbour_distance(jnp.ones((3, 2)), every(pool[:3]))) == 1.0
  # Non-members count for nothing: without [1, 0], distances 3, 3, 4: median 3.
  assert float(infer_lib._neighbour_distance(pool, jnp.array([True, False, True, True]))
               ) == pytest.approx(3.0)


def test_support_density_keeps_the_members_v_values_most(synthetic_ds, model):
  support = jnp.asarray(synthetic_ds.enc_AxE[:40])
  mf = model.scaler(_features(synthetic_ds))
  g = vn.task_embeddings(model.config, model.params, mf)
  config = dataclasses.replace(CONFIG, support_members=4)
  members = jnp.ones(support.shape[0], bool)
  kept, kept_member, scale, bandwidth = infer_lib._support_objective(
      config, _value_n(model, g), support, members)
  assert bool(kept_member.all())
  values = np.asarray(vn.lower_bound(vn.apply_embedded(model.config, model.params, g, support),
                                     0.0))
  best4 = np.asarray(support)[np.argsort(-values)[:4]]
  np.testing.assert_array_equal(np.asarray(kept), best4)
  assert float(scale) == pytest.approx(values.std() + 1e-6, rel=1e-4)
  assert float(bandwidth) == pytest.approx(float(infer_lib._neighbour_distance(support, members)))


def test_blend_ranks_the_pool_or_the_table_without_ascent(synthetic_ds):
  net = vn.ValueNetConfig(interaction_hidden=(8,), task_hidden=(4,))
  train = meta_train.TrainConfig(ensemble_size=2, num_steps=40, eval_every=20, batch_size=32,
                                 eval_size=64)
  model = meta_train.fit(synthetic_ds, net, train, train_tasks=range(5))[0]
  model = model.replace(blend_C=jnp.full(len(ranker.COMPONENTS), 1 / len(ranker.COMPONENTS)))
  pool = jnp.asarray(synthetic_ds.enc_AxE[::3])
  result = infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds), jax.random.key(0),
                           CONFIG, pool_PxE=pool)
  score = np.asarray(model.score(_features(synthetic_ds), pool))
  assert result.ranker == "blend"
  np.testing.assert_array_equal(result.pool_indices, np.argsort(-score, kind="stable")[:5])
  np.testing.assert_allclose(result.predicted, score[result.pool_indices], rtol=1e-6)
  # Without a pool: the training table's architectures (those the training tasks evaluated).
  free = infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds), jax.random.key(0),
                         CONFIG)
  train_archs = {synthetic_ds.arch_keys[a] for t in range(5)
                 for a in synthetic_ds.arch_R[synthetic_ds.task_rows(t)]}
  assert len(free.architectures) == CONFIG.top_k
  assert {synthetic_ds.space.format(a) for a in free.architectures} <= train_archs


def test_a_pool_given_as_a_mask_over_the_table_infers_the_same(synthetic_ds, model):
  """The simulation passes the held-out task's pool as a mask over every architecture; that
  must give what the pool itself gives."""
  enc = jnp.asarray(synthetic_ds.enc_AxE)
  member = np.zeros(len(enc), bool)
  member[synthetic_ds.arch_R[synthetic_ds.task_rows(5)]] = True
  static, dyn = hparams.split(CONFIG)
  f, key = _features(synthetic_ds), jax.random.key(3)
  pool = enc[member]
  explicit = infer_lib._infer_jit(synthetic_ds.space, static, dyn, model, f, key, pool, None,
                                  pool, None)
  masked = infer_lib._infer_jit(synthetic_ds.space, static, dyn, model, f, key, enc,
                                jnp.asarray(member), enc, jnp.asarray(member))
  np.testing.assert_array_equal(np.flatnonzero(member)[np.asarray(explicit[2])],
                                np.asarray(masked[2]))
  np.testing.assert_allclose(explicit[1], masked[1], rtol=1e-5)
