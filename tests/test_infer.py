"""tarch.infer: gradient ascent, projection to a pool, deduplication, compile-once."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tarch import infer as infer_lib
from tarch import meta_train
from tarch import value_net as vn
from tarch.space import Categorical, Space

CONFIG = infer_lib.InferConfig(num_restarts=16, num_steps=60, top_k=5)


@pytest.fixture(scope="module")
def model(synthetic_ds):
  net = vn.ValueNetConfig(interaction_hidden=(32, 32), task_hidden=(8,))
  # The ascent is under test here, so the kernel ranker is not considered (tested below).
  train = meta_train.TrainConfig(ensemble_size=2, num_steps=200, eval_every=50, batch_size=64,
                                 eval_size=256, task_kernel=False)
  return meta_train.fit(synthetic_ds, net, train, train_tasks=range(5))[0]


def _features(ds, task=5):
  return jnp.asarray(ds.features_TxF[task], jnp.float32)


def test_ascent_increases_value(synthetic_ds, model):
  space = synthetic_ds.space
  mf = model.scaler(_features(synthetic_ds))
  theta = jax.random.normal(jax.random.key(1), (8, space.dim))
  g = vn.task_embeddings(model.config, model.params, mf)
  optimum = jax.vmap(lambda th: infer_lib._ascend(
      model.config, CONFIG, space, model.params, g, th, jnp.zeros(space.dim)))(theta)
  value = jax.vmap(lambda enc: model.value(mf, enc))
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
  bias = np.asarray(infer_lib._pool_bias(space, jnp.asarray(pool)))
  assert np.all(bias[op_block][:2] == 0) and np.all(bias[op_block][2:] < -1e8)
  assert np.all(bias[space.slices[2][0]:] == 0)  # numeric entries are never masked
  result = infer_lib.infer(model, space, _features(synthetic_ds), jax.random.key(0), CONFIG,
                           pool_PxE=pool)
  assert {a["op"] for a in result.architectures} <= set(space.choices[0].values[:2])


def test_infer_compiles_once_for_same_shapes(synthetic_ds, model):
  config = dataclasses.replace(CONFIG, num_steps=7)  # a shape no other test compiles
  before = infer_lib._infer_arrays._cache_size()
  for seed, task in [(0, 4), (1, 5), (2, 3)]:
    infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds, task),
                    jax.random.key(seed), config)
  assert infer_lib._infer_arrays._cache_size() == before + 1


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


def test_held_out_scores_never_reach_the_methods(synthetic_ds):
  """LOTO leakage check: scrambling the held-out task's scores changes no pick but the oracle's."""
  from tarch import evaluate
  held_out = 0
  rows = synthetic_ds.task_rows(held_out)
  rng = np.random.default_rng(0)
  scrambled = dataclasses.replace(
      synthetic_ds,
      score_R=synthetic_ds.score_R.copy(), test_score_R=synthetic_ds.test_score_R.copy())
  scrambled.score_R[rows] = 10 * rng.permutation(synthetic_ds.score_R[rows])
  scrambled.test_score_R[rows] = rng.permutation(synthetic_ds.test_score_R[rows]) - 3
  net = vn.ValueNetConfig(task_hidden=(8,))
  train = meta_train.TrainConfig(ensemble_size=2, num_steps=60, eval_every=30, batch_size=64,
                                 eval_size=128)
  picks = []
  for ds in (synthetic_ds, scrambled):
    model, _ = meta_train.fit(ds, net, train, train_tasks=range(1, 6))
    fold = evaluate.evaluate_fold(ds, held_out, model, infer_lib.InferConfig(
        num_restarts=8, num_steps=20), jax.random.key(0))
    picks.append({r["method"]: r["architecture"] for r in fold
                  if not r["method"].startswith(("random", "oracle"))})
  assert picks[0] == picks[1]


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

  def ascend(weight):
    config = dataclasses.replace(CONFIG, num_steps=200, support_weight=weight)
    term = infer_lib._support_objective(model.config, config, model.params, g, support)
    optimum = jax.vmap(lambda th: infer_lib._ascend(
        model.config, config, space, model.params, g, th, jnp.zeros(space.dim), term))(theta)
    value = np.asarray(jax.vmap(lambda enc: model.value(mf, enc))(optimum))
    return _log_density(optimum, support, term[2]).mean(), value.mean()

  free_density, free_value = ascend(0.0)
  held_density, held_value = ascend(10.0)
  assert held_density > free_density + 0.2
  assert held_value < free_value  # the pull costs value: it is a trade-off, not a free lunch


def test_open_space_inference_near_a_support_set(synthetic_ds, model):
  space = synthetic_ds.space
  support = synthetic_ds.enc_AxE[::8]
  bandwidth = infer_lib._neighbour_distance(jnp.asarray(support))
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
  # Nearest-member distances 1, 1, 2, 4: median 1.5.
  assert float(infer_lib._neighbour_distance(pool)) == pytest.approx(1.5)
  # Duplicates are not neighbours; a pool of one distinct member gets bandwidth 1.
  assert float(infer_lib._neighbour_distance(jnp.concatenate([pool, pool]))) == pytest.approx(1.5)
  assert float(infer_lib._neighbour_distance(jnp.ones((3, 2)))) == 1.0


def test_support_density_keeps_the_members_v_values_most(synthetic_ds, model):
  support = jnp.asarray(synthetic_ds.enc_AxE[:40])
  mf = model.scaler(_features(synthetic_ds))
  g = vn.task_embeddings(model.config, model.params, mf)
  config = dataclasses.replace(CONFIG, support_members=4)
  kept, scale, bandwidth = infer_lib._support_objective(model.config, config, model.params, g,
                                                         support)
  values = np.asarray(vn.lower_bound(vn.apply_embedded(model.config, model.params, g, support),
                                     0.0))
  best4 = np.asarray(support)[np.argsort(-values)[:4]]
  np.testing.assert_array_equal(np.asarray(kept), best4)
  assert float(scale) == pytest.approx(values.std() + 1e-6, rel=1e-4)
  assert float(bandwidth) == pytest.approx(float(infer_lib._neighbour_distance(support)))


def test_kernel_ranker_ranks_the_pool_or_the_table_without_ascent(synthetic_ds):
  net = vn.ValueNetConfig(interaction_hidden=(8,), task_hidden=(4,))
  train = meta_train.TrainConfig(ensemble_size=2, num_steps=40, eval_every=20, batch_size=32,
                                 eval_size=64)
  model = meta_train.fit(synthetic_ds, net, train, train_tasks=range(5))[0]
  model = model.replace(ranker="task_kernel")
  pool = jnp.asarray(synthetic_ds.enc_AxE[::3])
  result = infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds), jax.random.key(0),
                           CONFIG, pool_PxE=pool)
  score = np.asarray(model.score(_features(synthetic_ds), pool))
  assert result.ranker == "task_kernel"
  np.testing.assert_array_equal(result.pool_indices, np.argsort(-score, kind="stable")[:5])
  np.testing.assert_allclose(result.predicted, score[result.pool_indices], rtol=1e-6)
  # Without a pool: the training table's architectures (those the training tasks evaluated).
  free = infer_lib.infer(model, synthetic_ds.space, _features(synthetic_ds), jax.random.key(0),
                         CONFIG)
  train_archs = {synthetic_ds.arch_keys[a] for t in range(5)
                 for a in synthetic_ds.arch_R[synthetic_ds.task_rows(t)]}
  assert len(free.architectures) == CONFIG.top_k
  assert {synthetic_ds.space.format(a) for a in free.architectures} <= train_archs
