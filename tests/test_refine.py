"""tarch.refine: the next suggestions given observed results on the new task."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tarch import meta_train, refine, tables
from tarch import value_net as vn

HELD_OUT = 5


@pytest.fixture(scope="module")
def model(synthetic_ds):
  net = vn.ValueNetConfig(interaction_hidden=(16,), task_hidden=(8,))
  train = meta_train.TrainConfig(ensemble_size=2, num_steps=100, eval_every=50, batch_size=64,
                                 eval_size=256)
  return meta_train.fit(synthetic_ds, net, train, train_tasks=range(HELD_OUT))[0]


def _candidates(model):
  table = model.kernel.table
  seen = np.asarray((table.evaluated_TxA & model.kernel.train_T[:, None]).any(0))
  return np.asarray(table.enc_AxE)[seen]


def test_without_observations_the_ranking_is_the_zero_shot_one(model, synthetic_ds):
  features = synthetic_ds.features_TxF[HELD_OUT]
  cand = _candidates(model)
  zero_shot = np.argsort(-np.asarray(model.score(features, cand)), kind="stable")[:5]
  out = refine.refine(model, synthetic_ds.space, features, [], [], q=5)
  np.testing.assert_array_equal(out.encodings, cand[zero_shot])
  # Exploration (the hypotheses' spread) starts with the first observation, too.
  exploring = refine.refine(model, synthetic_ds.space, features, [], [], q=5,
                            config=refine.RefineConfig(exploration=2.0))
  np.testing.assert_array_equal(exploring.encodings, cand[zero_shot])
  assert out.uncertainty.shape == (5,) and np.all(out.uncertainty >= 0)
  # The whole ranking, not only its top: every candidate, in the zero-shot order (ties aside),
  # with the zero-shot scores.
  score = np.asarray(model.score(features, cand))
  whole = refine.refine(model, synthetic_ds.space, features, np.zeros((0, cand.shape[1])), [],
                        q=len(cand))
  rows = tables.table_rows(cand, whole.encodings)
  assert sorted(rows.tolist()) == list(range(len(cand)))
  np.testing.assert_allclose(whole.predicted, score[rows], rtol=1e-5, atol=1e-5)
  assert np.all(np.diff(score[rows]) <= 1e-5)
  # Ties only carry no evidence either: the weights stay the prior's, and ranked by the refined
  # mean alone (no expected improvement over the tied best) so does the order.
  tied = refine.refine(model, synthetic_ds.space, features, cand[-3:], [0.5, 0.5, 0.5], q=5)
  np.testing.assert_array_equal(tied.task_weights, out.task_weights)
  mean_only = refine.RefineConfig(improvement=0.0)
  tied = refine.refine(model, synthetic_ds.space, features, cand[-3:], [0.5, 0.5, 0.5], q=5,
                       config=mean_only)
  np.testing.assert_array_equal(tied.encodings, cand[[i for i in np.argsort(
      -np.asarray(model.score(features, cand)), kind="stable") if i < len(cand) - 3][:5]])


@pytest.mark.parametrize("config", [refine.RefineConfig(improvement=0.0),
                                    refine.RefineConfig(improvement=1.0),
                                    refine.RefineConfig(adaptation=1.0)],
                         ids=["mean", "improvement", "adaptation"])
def test_padding_and_monotone_transformations_change_nothing(model, synthetic_ds, config):
  features = jnp.asarray(synthetic_ds.features_TxF[HELD_OUT], jnp.float32)
  cand = jnp.asarray(_candidates(model))
  table = model.kernel.table
  rows_C = jnp.asarray(tables.table_rows(table.enc_AxE, cand), jnp.int32)
  seen = jnp.asarray([3, 17, 29, 40, 52, 61])
  obs = cand[seen]
  # Scores ordered as training task 1 orders them, so that the weights move off the prior.
  y = jnp.asarray(table.pct_TxA)[1, rows_C[seen]] + jnp.linspace(0.0, 1e-3, seen.shape[0])
  refiner = refine.TaskRefiner(model, synthetic_ds.space, features)
  _, dyn = refine.hparams.split(config)

  def call(width, scores):
    pad = width - obs.shape[0]
    # Padded slots name candidate 0 and score 7: the mask must keep both out.
    return refine._suggest(
        model, refiner._prior, features, jnp.concatenate([obs, jnp.zeros((pad, obs.shape[1]))]),
        jnp.concatenate([rows_C[seen], jnp.zeros(pad, jnp.int32)]),
        jnp.concatenate([seen, jnp.zeros(pad, seen.dtype)]),
        jnp.concatenate([scores, jnp.full(pad, 7.0)]), jnp.arange(width) < obs.shape[0], dyn,
        jnp.float32(0.0), 4)

  (top8, valid8, mean8, spread8, share8, acq8), (top16, valid16, mean16, spread16, share16,
                                                 acq16) = (call(8, y), call(16, y))
  prior = call(8, jnp.zeros_like(y))[4]  # only ties: the prior's shares
  assert float(jnp.abs(share8 - prior).max()) > 0.05
  np.testing.assert_allclose(share8, share16, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(valid8, valid16)
  # The same refined scores at the top; which of exactly tied candidates comes first may
  # differ by float32 rounding.
  np.testing.assert_allclose(mean8, mean16, rtol=1e-5)
  np.testing.assert_allclose(acq8, acq16, rtol=1e-5)
  space = synthetic_ds.space
  plain = refine.refine(model, space, features, obs, np.asarray(y), q=4, config=config)
  moved = refine.refine(model, space, features, obs, np.exp(40 * np.asarray(y)) - 3, q=4,
                        config=config)
  np.testing.assert_array_equal(plain.encodings, moved.encodings)
  np.testing.assert_allclose(plain.task_weights, moved.task_weights, rtol=1e-6)


def test_observations_that_contradict_the_prior_move_the_suggestions(model, synthetic_ds):
  """Observations ranked as one training task ranks them move the weights onto that task,
  and the suggestions with it; observed architectures are never suggested again."""
  space, features = synthetic_ds.space, synthetic_ds.features_TxF[HELD_OUT]
  cand = _candidates(model)
  table = model.kernel.table
  rows = tables.table_rows(table.enc_AxE, cand)
  prior = refine.refine(model, space, features, [], [], q=3)
  # The training task whose ranking of the candidates agrees least with the zero-shot one.
  zero_shot = np.asarray(model.score(features, cand))
  pct = np.asarray(table.pct_TxA)[:HELD_OUT][:, rows]
  agreement = [np.corrcoef(zero_shot, p)[0, 1] for p in pct]
  target = int(np.argmin(agreement))
  rng = np.random.default_rng(0)
  seen = rng.choice(len(cand), 12, replace=False)
  out = refine.refine(model, space, features, cand[seen], pct[target, seen], q=3)
  assert int(np.argmax(out.task_weights)) == target
  assert out.task_weights[target] > 0.5 > prior.task_weights[target]
  assert np.all(out.task_weights[HELD_OUT:] == 0)  # the held-out task is no hypothesis
  keys = lambda enc: {e.tobytes() for e in enc}
  assert not keys(out.encodings) & keys(cand[seen])
  assert len(keys(out.encodings)) == 3
  assert keys(out.encodings) != keys(prior.encodings)
  # The suggestions are among the target task's best candidates that were not observed.
  open_ = np.setdiff1d(np.arange(len(cand)), seen)
  best_open = open_[np.argsort(-pct[target, open_])[:len(open_) // 4]]
  assert keys(out.encodings) <= keys(cand[best_open])


def test_value_correction_follows_the_observed_order():
  """V orders six observations by feature 0, their scores by feature 1: the fitted correction
  weighs feature 1 up, and V's corrected scores agree with the observed order more than V's
  do, up to the observed order itself at a large prior scale. No pair of distinct scores, or
  scale 0: exactly no correction."""
  phi = jnp.asarray([[1, 0, 0], [1, 0, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0], [0, 0, 1]],
                    jnp.float32)
  z = phi[:, 0] + 0.1 * jnp.arange(6.0)
  y = phi[:, 1] + 0.01 * jnp.arange(6.0)
  mask = jnp.ones(6, bool)
  tau = lambda scores: float(refine.kendall_tau(scores[None], y, mask)[0])
  taus = []
  for scale in (0.3, 1.0, 3.0):
    eta = refine.value_correction(z, phi, y, mask, scale)
    assert int(jnp.argmax(eta)) == 1
    taus.append(tau(z + scale * phi @ eta))
  assert tau(z) < 0 < taus[0] <= taus[1] <= taus[2] == 1.0
  for args in [(z, phi, y, jnp.zeros(6, bool), 1.0), (z, phi, jnp.ones(6), mask, 1.0),
               (z, phi, y, mask, 0.0)]:
    assert np.all(np.asarray(refine.value_correction(*args)) == 0)
  # Judged out of sample: the first observations' correction knows nothing of the later ones,
  # so the prequential tau is below the in-sample one; at scale 0 it is V's own tau exactly.
  preq, eta = refine.prequential_tau(z, phi, y, mask, 3.0)
  assert float(preq) < taus[2]
  np.testing.assert_allclose(eta, refine.value_correction(z, phi, y, mask, 3.0), rtol=1e-5,
                             atol=1e-7)
  assert float(refine.prequential_tau(z, phi, y, mask, 0.0)[0]) == tau(z)
  rng = np.random.default_rng(0)
  z7, y7 = jnp.asarray(rng.normal(size=7)), jnp.asarray(rng.normal(size=7))
  assert float(refine.prequential_tau(z7, jnp.zeros((7, 2)), y7, jnp.ones(7, bool), 1.0)[0]) == (
      float(refine.kendall_tau(z7[None], y7, jnp.ones(7, bool))[0]))


def test_value_correction_is_the_map_estimate():
  """The fit's closed-form Newton steps land where the gradient of the MAP objective (written
  here with autodiff) vanishes, with masked slots and tied scores left out."""
  rng = np.random.default_rng(3)
  k, d, scale = 12, 7, 1.5
  z, phi = jnp.asarray(rng.normal(size=k)), jnp.asarray(rng.random((k, d)))
  y = jnp.asarray(rng.integers(0, 5, size=k).astype(np.float32))  # ties
  mask = jnp.asarray(rng.random(k) < 0.8)

  def objective(eta):
    u = z + scale * phi @ eta
    above = mask[:, None] & mask[None] & (y[:, None] > y[None])
    return jnp.sum(jnp.where(above, jax.nn.softplus(u[None] - u[:, None]), 0.0)) + eta @ eta / 2

  eta = refine.value_correction(z, phi, y, mask, scale)
  assert float(jnp.abs(eta).max()) > 0.1
  assert float(jnp.abs(jax.grad(objective)(eta)).max()) < 1e-4
  assert float(objective(eta)) < float(objective(eta + 0.01)) and (
      float(objective(eta)) < float(objective(eta - 0.01)))


def test_the_correction_acts_only_with_observations(model, synthetic_ds):
  features = synthetic_ds.features_TxF[HELD_OUT]
  cand = _candidates(model)
  plain = refine.refine(model, synthetic_ds.space, features, [], [], q=len(cand),
                        config=refine.RefineConfig(adaptation=0.0))
  adapted = refine.refine(model, synthetic_ds.space, features, [], [], q=len(cand),
                          config=refine.RefineConfig(adaptation=3.0))
  np.testing.assert_array_equal(adapted.encodings, plain.encodings)
  np.testing.assert_array_equal(adapted.predicted, plain.predicted)
  # With observations it acts: V's corrected scores move the refined ones.
  table = model.kernel.table
  seen = np.arange(0, len(cand), len(cand) // 8)[:8]
  y = np.asarray(table.pct_TxA)[1, tables.table_rows(table.enc_AxE, cand[seen])]
  plain, adapted = (refine.refine(model, synthetic_ds.space, features, cand[seen], y, q=5,
                                  config=refine.RefineConfig(adaptation=a)) for a in (0.0, 3.0))
  assert not np.allclose(adapted.predicted, plain.predicted)


def test_expected_improvement_bets_on_one_hypothesis_where_the_mean_hedges():
  """Two equally likely hypotheses; candidate 1 is good under both, 2 and 3 are best under one
  each. The refined mean prefers 1, the expected improvement over the observed candidate 0
  (nearly as good as 1 under both) one of 2 and 3; without observations both give s_0."""
  z_HxX = jnp.asarray([[0.9, 1.0, 2.5, -1.0], [0.9, 1.0, -1.0, 2.5]])
  prior_H = jnp.asarray([0.5, 0.5])
  p = refine.Prior(z_HxX=z_HxX, prior_H=prior_H, score_X=prior_H @ z_HxX,
                   center_H=jnp.zeros(2), scale_H=jnp.ones(2), task_share=jnp.float32(1.0))
  mask_K = jnp.asarray([True, False])
  z_HxK = z_HxX[:, jnp.asarray([0, 3])]
  y_K = jnp.asarray([1.0, 9.0])  # the padded slot's score is ignored

  def best(improvement, mask):
    _, dyn = refine.hparams.split(refine.RefineConfig(improvement=improvement))
    score_X = refine.acquisition(p, z_HxK, y_K, mask, dyn)[0]
    return int(jnp.argmax(score_X.at[0].set(-jnp.inf))), score_X

  assert best(0.0, mask_K)[0] == 1
  assert best(1.0, mask_K)[0] in (2, 3)
  np.testing.assert_allclose(best(1.0, mask_K)[1], [0.0, 0.1, 0.8, 0.8], atol=1e-6)
  np.testing.assert_allclose(best(0.5, mask_K)[1],
                             0.5 * p.score_X + 0.5 * jnp.asarray([0.0, 0.1, 0.8, 0.8]),
                             atol=1e-6)
  no_obs = jnp.zeros(2, bool)
  np.testing.assert_array_equal(best(1.0, no_obs)[1], p.score_X)


def test_refine_errors_name_the_problem(model, synthetic_ds):
  space, features = synthetic_ds.space, synthetic_ds.features_TxF[HELD_OUT]
  cand = _candidates(model)
  with pytest.raises(ValueError, match="one score per observed"):
    refine.refine(model, space, features, cand[:3], [1.0, 2.0])
  with pytest.raises(ValueError, match="score 1 is nan"):
    refine.refine(model, space, features, cand[:2], [1.0, float("nan")])
  with pytest.raises(ValueError, match="q must be a positive integer"):
    refine.refine(model, space, features, cand[:2], [1.0, 2.0], q=0)
  with pytest.raises(ValueError, match="observed encodings must have shape"):
    refine.refine(model, space, features, cand[:2, :3], [1.0, 2.0])
  with pytest.raises(ValueError, match="meta-features"):
    refine.refine(model, space, features[:-1], [], [])
  with pytest.raises(ValueError, match="training tasks' table"):
    refine.refine(model.replace(kernel=None), space, features, [], [])
  with pytest.raises(ValueError, match="pool must have shape"):
    refine.refine(model, space, features, [], [], pool_PxE=cand[:0])
  with pytest.raises(ValueError, match="prior_floor"):
    refine.RefineConfig(prior_floor=1.5)
  with pytest.raises(ValueError, match="power"):
    refine.RefineConfig(power=0.0)
  with pytest.raises(ValueError, match="prior_strength"):
    refine.RefineConfig(prior_strength=float("inf"))
  with pytest.raises(ValueError, match="improvement"):
    refine.RefineConfig(improvement=1.5)
  with pytest.raises(ValueError, match="adaptation"):
    refine.RefineConfig(adaptation=-1.0)


def test_kendall_tau_and_the_weight_change():
  from scipy import stats
  rng = np.random.default_rng(1)
  z = rng.normal(size=(4, 7))
  y = rng.normal(size=7)
  mask = np.ones(7, bool)
  tau = refine.kendall_tau(jnp.asarray(z), jnp.asarray(y), jnp.asarray(mask))
  np.testing.assert_allclose(tau, [stats.kendalltau(zh, y).statistic for zh in z], rtol=1e-5)
  # Masked observations do not count, whatever their scores.
  padded = refine.kendall_tau(jnp.asarray(np.concatenate([z, z[:, :3]], 1)),
                              jnp.asarray(np.concatenate([y, [9.0, -9.0, 0.0]])),
                              jnp.asarray(np.concatenate([mask, np.zeros(3, bool)])))
  np.testing.assert_allclose(padded, tau, rtol=1e-6)
  # Two hypotheses over three points, prior 0.75 / 0.25 summing to 2: the second ranks the two
  # observations right (tau 1), the first wrong (tau -1). With n = 2 and n0 = 1 the weights are
  # 2 (1/3 prior share + 2/3 evidence share).
  prior_H = jnp.asarray([1.5, 0.5])
  z_HxK = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
  y2, m2 = jnp.asarray([0.0, 1.0]), jnp.asarray([True, True])
  change = refine.weight_change(prior_H, refine.kendall_tau(z_HxK, y2, m2), m2, 4.0, 1.0)
  np.testing.assert_allclose(prior_H + change, 2 * (np.array([0.75, 0.25]) / 3
                                                      + 2 / 3 * np.array([0.0, 1.0])), rtol=1e-6)
  none_mask = jnp.asarray([False, False])
  none = refine.weight_change(prior_H, refine.kendall_tau(z_HxK, y2, none_mask), none_mask,
                              4.0, 1.0)
  assert np.all(np.asarray(none) == 0)  # exactly: the zero-shot scores are left as they are
  # A prior that counts as no observation: the same without observations, the evidence alone
  # with them.
  assert np.all(np.asarray(refine.weight_change(prior_H, refine.kendall_tau(z_HxK, y2, none_mask),
                                                none_mask, 4.0, 0.0)) == 0)
  alone = refine.weight_change(prior_H, refine.kendall_tau(z_HxK, y2, m2), m2, 4.0, 0.0)
  np.testing.assert_allclose(prior_H + alone, [0.0, 2.0], atol=1e-6)


def test_suggestions_from_a_pool_and_from_dictionaries(model, synthetic_ds):
  space, features = synthetic_ds.space, synthetic_ds.features_TxF[HELD_OUT]
  pool = _candidates(model)[:20]
  observed = space.decode_many(pool[:2])
  out = refine.refine(model, space, features, observed, [0.3, 0.8], q=25, pool_PxE=pool)
  assert len(out.architectures) == 18  # the pool less the two observed
  assert sorted(out.pool_indices.tolist()) == list(range(2, 20))
  assert np.all(np.diff(out.acquisition) <= 1e-6)
  assert out.architectures == space.decode_many(pool[out.pool_indices])
  # A pool that lists an architecture twice suggests it once, as its first row.
  doubled = np.concatenate([pool, pool[5:6]])
  twice = refine.refine(model, space, features, [], [], q=len(doubled), pool_PxE=doubled)
  assert sorted(twice.pool_indices.tolist()) == list(range(len(pool)))


def test_a_task_refiner_scores_its_candidates_once(model, synthetic_ds, monkeypatch):
  """`refine` keeps the refiner of a (model, task, pool, settings) it has seen: a second call
  with new observations scores no candidate again and equals a fresh refiner's answer; another
  task, pool or model gets its own."""
  space, features = synthetic_ds.space, synthetic_ds.features_TxF[HELD_OUT]
  cand = _candidates(model)
  refine._REFINERS.clear()
  prepared = []
  original = refine._prepare
  monkeypatch.setattr(refine, "_prepare", lambda *a: prepared.append(1) or original(*a))
  first = refine.refine(model, space, features, cand[:2], [0.1, 0.9], q=3)
  second = refine.refine(model, space, features, cand[:4], [0.1, 0.9, 0.5, 0.7], q=3)
  assert len(prepared) == 1
  fresh = refine.TaskRefiner(model, space, features).suggest(cand[:4], [0.1, 0.9, 0.5, 0.7],
                                                             q=3)
  np.testing.assert_array_equal(second.encodings, fresh.encodings)
  np.testing.assert_allclose(second.predicted, fresh.predicted, rtol=1e-6)
  np.testing.assert_array_equal(first.encodings,
                                refine.TaskRefiner(model, space, features)
                                .suggest(cand[:2], [0.1, 0.9], q=3).encodings)
  prepared.clear()
  refine.refine(model, space, synthetic_ds.features_TxF[HELD_OUT - 1], [], [])
  refine.refine(model, space, features, [], [], pool_PxE=cand[:10])
  refine.refine(model.replace(blend_C=model.blend_C * 0.5), space, features, [], [])
  assert len(prepared) == 3
  # An observed architecture that is not a candidate still counts as evidence, scored in the
  # candidates' units.
  pool = cand[:10]
  outside = refine.refine(model, space, features, cand[10:14], [0.1, 0.9, 0.5, 0.7], q=10,
                          pool_PxE=pool)
  assert len(outside.architectures) == 10


def test_the_prior_counts_by_its_task_specific_share(model, synthetic_ds):
  """With `prior_relevance` 1 (the default) the prior counts as n0 times its share that depends
  on the task: a blend of best_on_average alone gives way to the evidence at the first pair, a
  blend of V and kernels keeps n0 (1 - floor); without observations nothing changes either
  way."""
  features = synthetic_ds.features_TxF[HELD_OUT]
  cand = _candidates(model)
  boa_only = dataclasses.replace(model, blend_C=jnp.asarray([0.0, 0.0, 0.0, 0.0, 1.0]))
  task_only = dataclasses.replace(model, blend_C=jnp.asarray([0.5, 0.5, 0.0, 0.0, 0.0]))
  relevant = refine.RefineConfig(prior_relevance=1.0, adaptation=0.0)
  plain = refine.RefineConfig(prior_relevance=0.0, adaptation=0.0)
  floor = relevant.prior_floor
  share = lambda m: float(refine.TaskRefiner(m, synthetic_ds.space, features,
                                             config=relevant)._prior.task_share)
  assert share(boa_only) == pytest.approx(0.0, abs=1e-6)
  assert share(task_only) == pytest.approx(1 - floor, abs=1e-6)
  mixed = dataclasses.replace(model, blend_C=jnp.asarray([0.5, 0.0, 0.0, 0.0, 0.5]))
  assert 0.01 < share(mixed) < 1 - floor - 0.01
  for m in (boa_only, task_only):
    for config in (relevant, plain):  # no observations: the zero-shot ranking, exactly
      out = refine.TaskRefiner(m, synthetic_ds.space, features, config=config).suggest([], [], 5)
      ref = refine.TaskRefiner(m, synthetic_ds.space, features, config=plain).suggest([], [], 5)
      np.testing.assert_array_equal(out.encodings, ref.encodings)
      np.testing.assert_array_equal(out.task_weights, ref.task_weights)
  # Two observations ordered as some training tasks order them: with best_on_average alone and
  # relevance 1, the weights are the evidence's alone (no task that orders them wrong keeps
  # weight); with relevance 0 the prior keeps a third of them.
  table = model.kernel.table
  pct_TxC = np.asarray(table.pct_TxA)[:HELD_OUT][:, tables.table_rows(table.enc_AxE, cand)]
  # A pair of candidates that the training tasks do not all order alike.
  up_TxC = pct_TxC[:, 1:] > pct_TxC[:, :1]
  j = 1 + int(np.argmax(up_TxC.any(0) & ~up_TxC.all(0)))
  obs, y = cand[[0, j]], pct_TxC[0, [0, j]]
  weights = lambda config: refine.TaskRefiner(boa_only, synthetic_ds.space, features,
                                              config=config).suggest(obs, y, 1).task_weights
  wrong = (pct_TxC[:, j] > pct_TxC[:, 0]) != (y[1] > y[0])
  assert wrong.any() and not wrong.all()
  np.testing.assert_allclose(weights(relevant)[:HELD_OUT][wrong], 0.0, atol=1e-6)
  assert np.all(weights(plain)[:HELD_OUT][wrong] > 1e-3)
  # With the task-specific blend and relevance 1 the prior counts as n0 (1 - floor) < n0: the
  # same observations move the weights further than with relevance 0.
  def moved(config):
    refiner = refine.TaskRefiner(task_only, synthetic_ds.space, features, config=config)
    return np.abs(refiner.suggest(obs, y, 1).task_weights
                  - refiner.suggest([], [], 1).task_weights).sum()
  assert moved(relevant) > moved(plain)
  with pytest.raises(ValueError, match="prior_relevance"):
    refine.RefineConfig(prior_relevance=1.5)
