"""Meta-features from raw arrays: values, padding invariance, vmap over tasks, compile once."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tarch import metafeatures as mfs


def _task(seed, n=60, d=4, c=3, separation=4.0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, c, n)
  x = rng.normal(size=(n, d)) + separation * np.eye(c, d)[y]
  holdout = np.arange(n) % 4 == 0
  return x.astype(np.float32), y.astype(np.int32), holdout


def _pad(x, y, holdout, n_max, d_max):
  n, d = x.shape
  xp = np.full((n_max, d_max), 7.0, np.float32)  # padding holds garbage, masks must hide it
  xp[:n, :d] = x
  yp = np.zeros(n_max, np.int32)
  yp[:n] = y
  rows = np.arange(n_max) < n
  feats = np.arange(d_max) < d
  hp = np.zeros(n_max, bool)
  hp[:n] = holdout
  return xp, yp, rows, feats, hp


def _compute(x, y, holdout, c=3):
  n, d = x.shape
  return np.asarray(mfs.compute(x, y, np.ones(n, bool), np.ones(d, bool), holdout, c))


def test_known_values():
  x, y, holdout = _task(0)
  f = dict(zip(mfs.NAMES, _compute(x, y, holdout)))
  assert len(f) == len(mfs.NAMES)
  assert f["log_rows"] == pytest.approx(np.log(60))
  assert f["log_features"] == pytest.approx(np.log(4))
  assert f["log_classes"] == pytest.approx(np.log(3))
  assert 0.9 < f["class_entropy"] <= 1.0
  assert f["constant_feature_fraction"] == 0.0
  assert f["nearest_centroid_accuracy"] > 0.9 and f["ridge_accuracy"] > 0.9
  assert 0 < f["pca_first_share"] <= f["pca_top3_share"] <= 1.0 + 1e-6


def test_landmarkers_fall_to_chance_without_signal():
  x, y, holdout = _task(1, n=400, separation=0.0)
  f = dict(zip(mfs.NAMES, _compute(x, y, holdout)))
  assert f["nearest_centroid_accuracy"] < 0.6 and f["ridge_accuracy"] < 0.6


def test_padding_does_not_change_meta_features():
  x, y, holdout = _task(2, n=50, d=3)
  plain = _compute(x, y, holdout)
  padded = np.asarray(mfs.compute(*_pad(x, y, holdout, 80, 7), 3))
  np.testing.assert_allclose(padded, plain, rtol=1e-4, atol=1e-5)


def test_constant_feature_and_single_class():
  x, y, holdout = _task(3, n=40, d=3)
  x[:, 1] = 5.0
  f = dict(zip(mfs.NAMES, _compute(x, np.zeros_like(y), holdout)))
  assert f["constant_feature_fraction"] == pytest.approx(1 / 3)
  assert f["log_classes"] == 0.0 and f["class_entropy"] == 0.0
  assert np.all(np.isfinite(list(f.values())))


def test_vmap_over_tasks_matches_one_by_one_and_compiles_once():
  tasks = [_task(s, n=30 + 10 * s, d=2 + s) for s in range(4)]
  padded = [_pad(*t, 80, 6) for t in tasks]
  stacked = [np.stack(parts) for parts in zip(*padded)]

  @jax.jit
  @chex.assert_max_traces(n=1)
  def all_tasks(x, y, rows, feats, holdout):
    return jax.vmap(lambda *a: mfs.compute(*a, num_classes=3))(x, y, rows, feats, holdout)

  mf_TxF = np.asarray(all_tasks(*stacked))
  for t, task in enumerate(tasks):
    np.testing.assert_allclose(mf_TxF[t], _compute(*task), rtol=1e-4, atol=1e-5)
  all_tasks(*[jnp.asarray(a) for a in stacked])  # same shapes: no second trace
  assert mf_TxF.shape == (4, len(mfs.NAMES))
