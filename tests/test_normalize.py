"""Tests for tarch.normalize: per-task normalisation keeps each task's order on a common scale."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from tarch import normalize

_groups = st.lists(
    st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=8), min_size=1, max_size=4)


def _flatten(groups):
  score = np.array([s for g in groups for s in g])
  task = np.array([t for t, g in enumerate(groups) for _ in g])
  return score, task


def _assert_monotone_per_task(score, task, out):
  for t in np.unique(task):
    s, o = score[task == t], out[task == t]
    ds, do = s[:, None] - s[None, :], o[:, None] - o[None, :]
    assert np.all(np.sign(ds) == np.sign(np.where(np.abs(do) < 1e-12, 0, do)))


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(_groups)
def test_percentile_properties(groups):
  score, task = _flatten(groups)
  out = normalize.normalize_scores(score, task, len(groups), "percentile")
  assert np.all(out > 0) and np.all(out <= 1)
  _assert_monotone_per_task(score, task, out)
  for t in range(len(groups)):
    assert out[task == t].max() == 1.0 or np.unique(score[task == t]).size < (task == t).sum()


def test_percentile_ties_average():
  out = normalize.normalize_scores([1.0, 1.0, 2.0, 5.0], [0, 0, 0, 1], 2, "percentile")
  np.testing.assert_allclose(out, [0.5, 0.5, 1.0, 1.0])


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(_groups)
def test_zscore_properties(groups):
  score, task = _flatten(groups)
  out = normalize.normalize_scores(score, task, len(groups), "zscore")
  for t in range(len(groups)):
    o = out[task == t]
    if np.ptp(score[task == t]) == 0:
      np.testing.assert_array_equal(o, 0.0)
    else:
      np.testing.assert_allclose([o.mean(), o.std()], [0.0, 1.0], atol=1e-9)
  _assert_monotone_per_task(score, task, out)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(_groups)
def test_gauss_rank_properties(groups):
  score, task = _flatten(groups)
  out = normalize.normalize_scores(score, task, len(groups), "gauss_rank")
  assert np.all(np.isfinite(out))
  _assert_monotone_per_task(score, task, out)
  flipped = normalize.normalize_scores(-score, task, len(groups), "gauss_rank")
  np.testing.assert_allclose(flipped, -out, atol=1e-12)


def test_normalize_rejects_bad_input():
  with pytest.raises(ValueError, match=r"valid: \['gauss_rank', 'percentile', 'zscore'\]"):
    normalize.normalize_scores([1.0], [0], 1, "rank")
  with pytest.raises(ValueError, match="finite"):
    normalize.normalize_scores([np.nan], [0], 1, "zscore")
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    normalize.normalize_scores([1.0], [1], 1, "zscore")


@pytest.mark.parametrize("method", normalize.METHODS)
def test_every_method_is_valid(method):
  normalize.check_normalization(method)
  out = normalize.normalize_scores([3.0, 1.0, 2.0], [0, 0, 0], 1, method)
  assert np.argmax(out) == 0 and np.argmin(out) == 1


def test_check_normalization_names_the_valid_methods():
  with pytest.raises(ValueError, match=r"unknown normalisation 'rank'; valid: \['gauss_rank'"):
    normalize.check_normalization("rank")
