"""Value network, meta-training and save/restore."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from tarch import meta_train, ranker, tables
from tarch import value_net as vn

NET = vn.ValueNetConfig(interaction_hidden=(32, 32), task_hidden=(8,))
# The meta-feature term is kept at full scale here, so tests can check that it is used.
TRAIN = meta_train.TrainConfig(ensemble_size=3, num_steps=300, eval_every=50, batch_size=64,
                               eval_size=256, patience=100, task_effect_scales=(1.0,))


@pytest.fixture(scope="module")
def fitted(synthetic_ds):
  return meta_train.fit(synthetic_ds, NET, TRAIN, train_tasks=range(5))


def test_fit_learns_the_training_tasks(synthetic_ds, fitted):
  model, history = fitted
  assert history[-1]["train_loss"] < history[0]["train_loss"]
  rows = synthetic_ds.task_rows(0)
  pred = model.predict(jnp.asarray(synthetic_ds.features_TxF[0], jnp.float32),
                       jnp.asarray(synthetic_ds.enc_AxE[synthetic_ds.arch_R[rows]]))
  rho = scipy.stats.spearmanr(np.asarray(pred), synthetic_ds.score_R[rows]).statistic
  assert rho > 0.6


def test_ensemble_members_differ(synthetic_ds, fitted):
  model, _ = fitted
  assert model.ensemble_size == 3
  enc = jnp.asarray(synthetic_ds.enc_AxE[:16])
  per_member = np.asarray(model.predict_members(jnp.zeros(3), enc))
  assert per_member.shape == (3, 16)
  assert np.ptp(per_member, axis=0).max() > 1e-3


@pytest.mark.parametrize("loss", sorted(vn.LOSSES))
def test_each_loss_trains_to_finite_values(synthetic_ds, loss):
  config = dataclasses.replace(TRAIN, loss=loss, num_steps=60, eval_every=30)
  model, history = meta_train.fit(synthetic_ds, NET, config, train_tasks=[0, 1, 2])
  assert all(np.isfinite(h["train_loss"]) for h in history)
  jax.tree.map(lambda x: np.testing.assert_array_equal(np.isfinite(x), True), model.params)


def test_unknown_loss_is_named():
  with pytest.raises(ValueError, match="unknown loss 'hinge'.*mse"):
    vn.get_loss("hinge")


def test_gradient_wrt_relaxed_architecture_is_finite_and_nonzero(synthetic_ds, fitted):
  model, _ = fitted
  space = synthetic_ds.space
  mf = model.scaler(jnp.asarray(synthetic_ds.features_TxF[5], jnp.float32))
  theta = jax.random.normal(jax.random.key(0), (space.dim,))
  grad = jax.grad(lambda th: model.value(mf, space.relax(th, 0.5)))(theta)
  assert np.all(np.isfinite(grad))
  assert np.abs(np.asarray(grad)).max() > 1e-6


def test_scaler_clips_to_training_range():
  scaler = meta_train.FeatureScaler.fit(np.array([[0.0, 1.0], [2.0, 3.0]]))
  z = np.asarray(scaler(jnp.array([100.0, -100.0])))
  np.testing.assert_allclose(z, [1.0, -1.0])


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1.0, 1e20, 1e30, 1e37])
def test_scaler_is_exact_at_any_magnitude(scale):
  # Squared deviations of 1e20 overflow float32 and those of 1e-20 flush to zero; measured in
  # units of the largest deviation, the standardised features do not depend on the scale.
  x = np.array([[1.0, 5.0], [2.0, 5.0], [4.0, 5.0]])
  scaler = meta_train.FeatureScaler.fit(x * scale)
  z = np.asarray(scaler.standardize(jnp.asarray(x * scale, jnp.float32)))
  np.testing.assert_allclose(z[:, 0], (x[:, 0] - x[:, 0].mean()) / x[:, 0].std(), rtol=1e-5)
  np.testing.assert_array_equal(z[:, 1], 0.0)  # constant: std 1, not 0
  assert np.asarray(scaler.std_F)[1] == 1.0


def test_save_restore_round_trip(tmp_path, synthetic_ds, fitted):
  model, _ = fitted
  meta_train.save(model, tmp_path / "model")
  restored = meta_train.restore(tmp_path / "model")
  assert restored.config == model.config
  f = jnp.asarray(synthetic_ds.features_TxF[5], jnp.float32)
  enc = jnp.asarray(synthetic_ds.enc_AxE[:32])
  np.testing.assert_allclose(restored.predict(f, enc), model.predict(f, enc), rtol=1e-6)
  assert restored.ranker == model.ranker
  blend_model = model.replace(blend_C=jnp.array([0.25, 0.0, 0.25, 0.0, 0.5]))
  meta_train.save(blend_model, tmp_path / "blend_model")
  restored = meta_train.restore(tmp_path / "blend_model")
  assert restored.ranker == "blend"
  np.testing.assert_allclose(restored.blend_C, blend_model.blend_C)
  np.testing.assert_allclose(restored.score(f, enc), blend_model.score(f, enc), rtol=1e-5,
                             atol=1e-6)
  # A model saved before the blend: V alone restores; the old task-kernel ranker is an error.
  config_path = tmp_path / "model" / "value_net.json"
  saved = json.loads(config_path.read_text())
  del saved["blend"]
  config_path.write_text(json.dumps({**saved, "ranker": "value_net"}))
  assert meta_train.restore(tmp_path / "model").ranker == "value_net"
  config_path.write_text(json.dumps({**saved, "ranker": "task_kernel"}))
  with pytest.raises(ValueError, match="older tarch whose task-kernel ranker"):
    meta_train.restore(tmp_path / "model")
  # A blend over another set of components (an older version's four) is an error, not a misread.
  config_path.write_text(json.dumps({**saved, "blend": [0.25, 0.25, 0.0, 0.5]}))
  with pytest.raises(ValueError, match="value_net.json: field 'blend' has 4 weights"):
    meta_train.restore(tmp_path / "model")


def test_fit_rejects_empty_training_set(synthetic_ds):
  with pytest.raises(ValueError, match="at least one training task"):
    meta_train.fit(synthetic_ds, NET, TRAIN, train_tasks=[])


def test_scale_zero_removes_the_meta_feature_term(synthetic_ds, fitted):
  model, _ = fitted
  prior = dataclasses.replace(model, params=meta_train.scale_task_effects(model.params, 0.0))
  enc = jnp.asarray(synthetic_ds.enc_AxE[:16])
  a = prior.predict(jnp.asarray(synthetic_ds.features_TxF[0], jnp.float32), enc)
  b = prior.predict(jnp.asarray(synthetic_ds.features_TxF[1], jnp.float32), enc)
  np.testing.assert_allclose(a, b, rtol=1e-6)
  assert not np.allclose(model.predict(jnp.asarray(synthetic_ds.features_TxF[0], jnp.float32),
                                       enc),
                         model.predict(jnp.asarray(synthetic_ds.features_TxF[1], jnp.float32),
                                       enc))


def test_shrinkage_keeps_informative_meta_features():
  from tarch import runs, synthetic
  space, runs_df, tasks_df = synthetic.make_frames(num_tasks=8, archs_per_task=96,
                                                   relatedness=3.0, noise=0.01, seed=1)
  ds = runs.from_frames(space, runs_df, tasks_df)
  config = dataclasses.replace(TRAIN, num_steps=400, ensemble_size=4,
                               task_effect_scales=(0.0, 0.25, 0.5, 1.0))
  model, _ = meta_train.fit(ds, NET, config)
  assert model.task_effect_scale > 0.0


def _choice(scales, metric_SxM):
  """The scale (ascending order) the in-graph one-standard-error rule picks."""
  return scales[int(meta_train._one_standard_error_index(jnp.asarray(metric_SxM)))]


def test_one_standard_error_rule_prefers_stronger_shrinkage():
  # Scale 1.0 is best on average; 0.25's paired differences to it (0.05, -0.03, 0.01) are within
  # one standard error, so the stronger shrinkage 0.25 is chosen; 0.0 is clearly worse.
  best = np.array([0.5, 0.7, 0.6])
  metric = np.stack([best + 0.5, best + np.array([0.05, -0.03, 0.01]), best])
  assert _choice([0.0, 0.25, 1.0], metric) == 0.25
  clear = np.array([[1.0, 1.0, 1.0], [0.0, 0.01, 0.02]])
  assert _choice([0.0, 1.0], clear) == 1.0


def test_one_standard_error_rule_is_paired_across_members():
  # Members hold out different tasks, so their metrics spread widely; a loss that every member
  # sees is real even when it is small next to that spread.
  best = np.array([0.5, 0.9, 0.1, 0.7])
  consistent_loss = np.stack([best + 0.02, best])
  assert _choice([0.0, 1.0], consistent_loss) == 1.0


def test_interaction_term_is_shrunk_by_its_own_scale(synthetic_ds):
  net = dataclasses.replace(NET, interaction_hidden=(8,))
  model, _ = meta_train.fit(synthetic_ds, net, dataclasses.replace(
      TRAIN, num_steps=60, eval_every=20, interaction_scales=(0.0, 1.0)))
  assert model.interaction_scale in (0.0, 1.0)
  kernel = model.params["params"]["interactions"]["kernel"]
  if model.interaction_scale == 0.0:
    assert not np.any(np.asarray(kernel))
  zeroed = meta_train.scale_interactions(model.params, 0.0)
  assert not np.any(np.asarray(zeroed["params"]["interactions"]["kernel"]))
  np.testing.assert_array_equal(zeroed["params"]["main_effects"]["kernel"],
                                model.params["params"]["main_effects"]["kernel"])


@pytest.mark.parametrize("field, value", [
    ("ensemble_size", 0), ("num_steps", 0), ("eval_every", 0), ("top_quantile", 0.0),
    ("meta_feature_dropout", 1.0), ("holdout_tasks", -1), ("task_weighting", "by_size"),
    ("early_stopping", "never"), ("target", "rank"), ("task_effect_scales", (2.0,)),
    ("interaction_dropout", 1.0), ("interaction_scales", (-1.0,)), ("top_weight", -1.0)])
def test_invalid_train_config_is_named(field, value):
  with pytest.raises(ValueError, match=field.split("_")[0]):
    meta_train.TrainConfig(**{field: value})


def test_single_member_ensemble_gives_finite_gradients(synthetic_ds):
  model, _ = meta_train.fit(synthetic_ds, NET, dataclasses.replace(
      TRAIN, ensemble_size=1, num_steps=20, eval_every=10))
  space = synthetic_ds.space
  mf = model.scaler(jnp.asarray(synthetic_ds.features_TxF[0], jnp.float32))
  grad = jax.grad(lambda th: model.value(mf, space.relax(th)))(jnp.ones(space.dim))
  assert np.all(np.isfinite(grad))


def test_meta_feature_term_fades_outside_the_training_range(synthetic_ds, fitted):
  model, _ = fitted
  inside = jnp.asarray(synthetic_ds.features_TxF[1], jnp.float32)
  assert float(model.scaler.trust(inside)) == pytest.approx(1.0)
  far = inside.at[0].set(1e3)
  assert float(model.scaler.trust(far)) < 1e-6
  np.testing.assert_allclose(model.task_embeddings(far), 0.0, atol=1e-6)


def test_members_hold_out_every_training_task():
  """k-fold: with more tasks than members x holdout_tasks, members hold out more tasks."""
  mask = np.ones(10, bool)
  mask[3] = False
  config = dataclasses.replace(TRAIN, ensemble_size=3, holdout_tasks=1)
  key = jax.random.key(0)
  fit, held = map(np.asarray, meta_train.holdout_masks(jnp.asarray(mask), config, key))
  assert held[:, mask].any(0).all() and not held[:, 3].any()
  assert (held.sum(1) == 3).all()  # ceil(9 / 3)
  assert not (fit & held).any() and (fit | held)[:, mask].all() and not fit[:, 3].any()
  # A single member keeps its `holdout_tasks`; k-fold never leaves a member under half the tasks.
  single = dataclasses.replace(config, ensemble_size=1)
  assert np.asarray(meta_train.holdout_masks(jnp.asarray(mask), single, key)[1]).sum() == 1
  two = dataclasses.replace(config, ensemble_size=2)
  three_tasks = jnp.array([True, True, True])
  assert (np.asarray(meta_train.holdout_masks(three_tasks, two, key)[1]).sum(1) == 1).all()
  # Too few tasks to hold any out: every member fits and early-stops on all of them.
  one_task = jnp.array([False, True, False])
  fit, held = map(np.asarray, meta_train.holdout_masks(one_task, two, key))
  assert (fit == np.asarray(one_task)).all() and (held == np.asarray(one_task)).all()


def test_a_model_with_task_interactions_fits_saves_and_restores(tmp_path, synthetic_ds):
  """The two-tower term trains, and a saved model restores with it (not as the default V)."""
  net = dataclasses.replace(NET, task_interactions=True)
  model, _ = meta_train.fit(synthetic_ds, net, dataclasses.replace(
      TRAIN, num_steps=40, eval_every=20, top_weight=3.0), train_tasks=range(5))
  meta_train.save(model, tmp_path / "model")
  restored = meta_train.restore(tmp_path / "model")
  assert restored.config.task_interactions and restored.config == model.config
  enc = jnp.asarray(synthetic_ds.enc_AxE[:32])
  for t in (0, 5):
    f = jnp.asarray(synthetic_ds.features_TxF[t], jnp.float32)
    np.testing.assert_allclose(restored.predict(f, enc), model.predict(f, enc), rtol=1e-6)
    assert np.isfinite(np.asarray(model.predict(f, enc))).all()


def test_pair_weights_put_the_pairwise_loss_on_the_top():
  """`top_weight` weighs a pair by the higher percentile of its two architectures: a pair of
  two bad architectures that V orders wrongly costs less than a wrongly ordered top pair."""
  config = vn.ValueNetConfig(interaction_hidden=(), task_hidden=(4,), encoding_dim=2)
  params = vn.init_params(config, jax.random.key(0), 1, 2)
  params = jax.tree.map(jnp.zeros_like, params)
  params["params"]["main_effects"]["kernel"] = jnp.array([[1.0], [0.0]])  # V = first entry
  mf = jnp.zeros((2, 1))
  enc_i, enc_j = jnp.array([[1.0, 0.0]] * 2), jnp.array([[0.0, 1.0]] * 2)
  target_i, target_j = jnp.array([0.0, 0.0]), jnp.array([1.0, 1.0])  # V orders both wrongly
  plain = vn.pairwise_loss(config, params, mf, enc_i, target_i, enc_j, target_j)[0]
  ones = vn.pairwise_loss(config, params, mf, enc_i, target_i, enc_j, target_j,
                          jnp.ones(2))[0]
  assert float(plain) == float(ones) == pytest.approx(float(jax.nn.softplus(1.0)))
  # Weights 1 and 0: the loss is the first pair's alone (a weighted mean), not halved.
  first = vn.pairwise_loss(config, params, mf, enc_i, target_i, enc_j, target_j,
                           jnp.array([1.0, 0.0]))[0]
  assert float(first) == pytest.approx(float(plain))
  small = vn.pairwise_loss(config, params, mf, enc_i, target_i, enc_j, target_j,
                           jnp.array([1e-3, 1e-3]))[0]  # a mean, however small the weights
  assert float(small) == pytest.approx(float(plain))
  ties = vn.pairwise_loss(config, params, mf, enc_i, target_i, enc_j, target_i)[0]
  assert float(ties) == 0.0
  mse = vn.mse_loss(config, params, mf, enc_i, target_i, enc_j, target_j)[0]
  assert float(mse) == pytest.approx(float(vn.mse_loss(
      config, params, mf, enc_i, target_i, enc_j, target_j, jnp.array([2.0, 2.0]))[0]))


def test_top_weight_changes_what_v_learns(synthetic_ds):
  """Percentiles are in (0, 1]; weighting pairs by them changes the trained V."""
  data = meta_train.prepare_data(synthetic_ds, "zscore")
  assert float(data.percentile_R.min()) > 0 and float(data.percentile_R.max()) == 1.0
  config = dataclasses.replace(TRAIN, num_steps=20, eval_every=10)
  a, _ = meta_train.fit(synthetic_ds, NET, config, train_tasks=range(6))
  b, _ = meta_train.fit(synthetic_ds, NET, dataclasses.replace(config, top_weight=2.0),
                        train_tasks=range(6))
  enc = jnp.asarray(synthetic_ds.enc_AxE[:32])
  mf = jnp.asarray(synthetic_ds.features_TxF[0], jnp.float32)
  assert not np.allclose(a.predict(mf, enc), b.predict(mf, enc))


def test_one_standard_error_rule_keeps_the_first_choice_unless_clearly_worse():
  """Rows are choices (V first), columns held-out tasks, lower is better."""
  close = np.array([[0.50, 0.40, 0.60, 0.50], [0.45, 0.42, 0.50, 0.52]])  # within one SE
  assert _choice([0, 1], close) == 0
  clear = np.array([[0.50, 0.40, 0.60, 0.50], [0.30, 0.21, 0.39, 0.31]])
  assert _choice([0, 1], clear) == 1


def test_fit_chooses_the_blend_on_held_out_tasks(synthetic_ds, fitted):
  """The blend is the simplest candidate within one SE of the best on the held-out tasks."""
  reports = []
  model, _ = meta_train.fit(synthetic_ds, NET, dataclasses.replace(TRAIN, num_steps=100),
                            train_tasks=range(5), progress=reports.append)
  (report,) = [r for r in reports if "blend" in r]
  (by_scale,) = [r["val_loss_by_interaction_scale"] for r in reports
                 if "val_loss_by_interaction_scale" in r]
  assert sorted(by_scale) == [0.0, 1.0] and all(np.isfinite(v) for v in by_scale.values())
  assert model.kernel is not None
  assert report["blend"] == ranker.describe_blend(model.blend_C)
  assert sum(report["blend"].values()) == pytest.approx(1.0)
  means = report["heldout_top_percentile"]
  assert means["chosen"] >= means["best_on_average"] - 1e-6 or report["heldout_tasks"] < 2
  off, _ = meta_train.fit(synthetic_ds, NET, dataclasses.replace(
      TRAIN, num_steps=50, blend=False), train_tasks=range(5))
  assert off.ranker == "value_net" and off.kernel is None


def test_blends_start_with_best_on_average_and_end_with_the_value_net():
  assert ranker.BLENDS.shape == (70, len(ranker.COMPONENTS))
  np.testing.assert_allclose(ranker.BLENDS.sum(1), 1.0)
  np.testing.assert_array_equal(ranker.BLENDS[0], [0, 0, 0, 0, 1])
  np.testing.assert_array_equal(ranker.BLENDS[-1], ranker.VALUE_NET_ONLY)
  assert (np.diff(ranker.BLENDS[:, -1]) <= 0).all()  # weight on best_on_average never grows


def test_blend_scores_standardise_each_component_over_the_candidates():
  member = jnp.array([True, True, True, False])
  scores = jnp.array([[1.0, 2.0, 3.0, 100.0], [30.0, 20.0, 10.0, -5.0]])
  z = np.asarray(ranker.blend_scores(jnp.array([0.5, 0.5]), scores, member))
  np.testing.assert_allclose(z[:3], 0.0, atol=1e-6)  # opposite rankings cancel
  z = np.asarray(ranker.blend_scores(jnp.array([1.0, 0.0]), scores, member))
  np.testing.assert_allclose(z[:3], np.array([-1, 0, 1]) / np.std([1, 2, 3]), rtol=1e-5)
  constant = np.asarray(ranker.blend_scores(jnp.array([1.0]), jnp.ones((1, 4)), member))
  np.testing.assert_array_equal(constant, 0.0)


def test_blend_score_of_best_on_average_is_the_mean_percentile_order(synthetic_ds, fitted):
  """With all weight on best_on_average the model ranks candidates by their mean percentile
  over the training tasks; a candidate off the table takes its nearest table architecture's."""
  model, _ = fitted
  boa_model = model.replace(blend_C=jnp.asarray(ranker.BLENDS[0]))  # best_on_average alone
  assert boa_model.ranker == "blend"
  pool = synthetic_ds.arch_R[synthetic_ds.task_rows(2)]
  features = jnp.asarray(synthetic_ds.features_TxF[5], jnp.float32)
  score = np.asarray(boa_model.score(features, jnp.asarray(synthetic_ds.enc_AxE[pool])))
  weight_T = np.isin(np.arange(synthetic_ds.num_tasks), range(5)).astype(np.float32)
  mean_pct = np.asarray(tables.PercentileTable.build(synthetic_ds).scores(weight_T))[pool]
  np.testing.assert_allclose(score, (mean_pct - mean_pct.mean()) / mean_pct.std(), rtol=1e-4,
                             atol=1e-5)
  near = boa_model.score(features, jnp.asarray(synthetic_ds.enc_AxE[pool]) + 1e-3)
  np.testing.assert_allclose(near, score, rtol=1e-6)


@pytest.mark.parametrize("task_interactions", [False, True])
@pytest.mark.parametrize("hidden", [(), (16,), (16, 8)])
def test_fused_members_predict_as_the_ensemble(hidden, task_interactions):
  config = vn.ValueNetConfig(interaction_hidden=hidden, task_hidden=(4,), encoding_dim=6,
                             numeric_dims=(4, 5), task_interactions=task_interactions)
  params = jax.vmap(lambda k: vn.init_params(config, k, 3, 6))(jax.random.split(
      jax.random.key(0), 4))
  noise = jax.random.key(1)
  params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(noise, x.shape), params)
  g = vn.task_embeddings(config, params, jnp.ones(3))
  enc = jax.random.uniform(jax.random.key(2), (5, 6))
  np.testing.assert_allclose(vn.apply_fused(config, vn.fuse_members(config, params), g, enc),
                             vn.apply_embedded(config, params, g, enc), atol=1e-5)


def test_training_is_one_program_for_every_seed_and_learning_rate(synthetic_ds):
  """Dynamic hyperparameters are traced: changing them does not recompile `train`."""
  from tarch import hparams

  net = meta_train.with_layout(vn.ValueNetConfig(interaction_hidden=(8,), task_hidden=(4,)),
                               synthetic_ds.space)
  data = meta_train.prepare_data(synthetic_ds, "zscore")
  mask = jnp.arange(synthetic_ds.num_tasks) != 0
  config = meta_train.TrainConfig(ensemble_size=2, num_steps=20, eval_every=10, batch_size=16,
                                  eval_size=32)
  before = meta_train.train._cache_size()
  for seed, lr in ((0, 1e-3), (1, 3e-3), (2, 1e-2)):
    static, dyn = hparams.split(dataclasses.replace(config, seed=seed, learning_rate=lr))
    model, report = meta_train.train(net, static, dyn, data, mask, jax.random.key(seed))
    assert int(report.steps) == 20
  assert meta_train.train._cache_size() == before + 1


def test_early_stopping_keeps_each_members_best_evaluation(synthetic_ds):
  """Training stops after `patience` evaluations without improvement, in the graph."""
  config = dataclasses.replace(TRAIN, num_steps=2000, eval_every=10, patience=2,
                               learning_rate=0.05)
  _, history = meta_train.fit(synthetic_ds, NET, config, train_tasks=range(5))
  steps = [h["step"] for h in history]
  assert steps[-1] < 2000 and steps == list(range(10, steps[-1] + 1, 10))
  best = [h["best_val_loss"] for h in history]
  assert all(b <= a + 1e-6 for a, b in zip(best, best[1:]))
  # Each member keeps its own best: their mean is at most the best mean of one evaluation.
  assert best[-1] <= min(h["val_loss"] for h in history) + 1e-6


@pytest.mark.parametrize("task_interactions", [False, True])
def test_only_task_interactions_let_interactions_depend_on_the_task(task_interactions):
  """The interaction contrast V(a11) - V(a10) - V(a01) + V(a00) of two binary choices is the
  same for every task unless G also weights the interaction MLP's hidden units."""
  config = vn.ValueNetConfig(interaction_hidden=(16,), task_hidden=(4,), encoding_dim=4,
                             task_interactions=task_interactions)
  params = vn.init_params(config, jax.random.key(0), 3, 4)
  noise = jax.random.key(1)
  params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(noise, x.shape), params)
  enc = jnp.array([[1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1]], jnp.float32)
  net = vn.ValueNet(config)
  contrast = [float(np.dot(net.apply(params, m, enc), [1, -1, -1, 1]))
              for m in (jnp.zeros(3), jnp.array([1.0, -2.0, 0.5]))]
  if task_interactions:
    assert abs(contrast[0] - contrast[1]) > 1e-3
  else:
    np.testing.assert_allclose(contrast[0], contrast[1], atol=1e-5)
