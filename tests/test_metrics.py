"""Tests for tarch.metrics: hand-computed cases and brute-force checks of the random_k statistics."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tarch import metrics

# --- brute-force references -------------------------------------------------------------------


def _brute_probabilities(score, k):
  """Exact probabilities by enumerating every k-subset; ties split evenly among the drawn tied."""
  probs = [Fraction(0)] * len(score)
  subsets = list(itertools.combinations(range(len(score)), k))
  for subset in subsets:
    top = max(score[i] for i in subset)
    kept = [i for i in subset if score[i] == top]
    for i in kept:
      probs[i] += Fraction(1, len(kept) * len(subsets))
  return probs


def _brute_expected_test(score, test, k):
  """Exact E[test of random_k] as a Fraction (test values must be ints or Fractions)."""
  return sum(p * Fraction(t) for p, t in zip(_brute_probabilities(score, k), test))


def _brute_trials_to_match(chosen, score, test):
  """Smallest k with the exact expectation >= chosen, by scanning every k."""
  for k in range(1, len(score) + 1):
    if _brute_expected_test(score, test, k) >= chosen:
      return float(k)
  return math.inf


# --- normalized_regret and percentile ----------------------------------------------------------


@pytest.mark.parametrize(
  "chosen, expected",
  [
    (5.0, 0.0),  # the best candidate
    (3.0, 1.0),  # the median
    (4.0, 0.5),
    (1.0, 2.0),
    (6.0, -0.5),  # better than the whole pool
  ],
)
def test_normalized_regret_odd_pool(chosen, expected):
  assert metrics.normalized_regret(chosen, [3.0, 1.0, 5.0, 2.0, 4.0]) == pytest.approx(expected)


def test_normalized_regret_even_pool_uses_midpoint_median():
  # best 10, median 2.5.
  assert metrics.normalized_regret(3.0, [1.0, 2.0, 3.0, 10.0]) == pytest.approx(7.0 / 7.5)


@pytest.mark.parametrize(
  "chosen, expected",
  [
    (5.0, 0.0),
    (1.0, 1.0),  # falls back to (best - chosen) / (best - min)
    (3.0, 0.5),
  ],
)
def test_normalized_regret_degenerate_pool(chosen, expected):
  # Median == best: two of three candidates tie at the best.
  assert metrics.normalized_regret(chosen, [5.0, 1.0, 5.0]) == pytest.approx(expected)


def test_normalized_regret_constant_pool_is_zero():
  assert metrics.normalized_regret(2.0, [2.0, 2.0, 2.0]) == 0.0
  assert metrics.normalized_regret(1.0, [2.0, 2.0, 2.0]) == 0.0


@pytest.mark.parametrize(
  "chosen, expected",
  [
    (3.0, 0.6),
    (0.5, 0.0),
    (5.0, 1.0),
    (3.5, 0.6),
  ],
)
def test_percentile(chosen, expected):
  assert metrics.percentile(chosen, [5.0, 4.0, 3.0, 2.0, 1.0]) == pytest.approx(expected)


def test_percentile_counts_ties_as_not_better():
  assert metrics.percentile(2.0, [1.0, 2.0, 2.0, 3.0]) == pytest.approx(0.75)


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "score, test",
  [
    ([], []),
    ([1.0, 2.0], [1.0]),
    ([1.0, np.nan], [1.0, 2.0]),
    ([1.0, 2.0], [1.0, np.inf]),
    ([[1.0, 2.0]], [[1.0, 2.0]]),
  ],
)
def test_bad_pools_raise(score, test):
  with pytest.raises(ValueError):
    metrics.random_k_expected(score, test, 1)
  with pytest.raises(ValueError):
    metrics.trials_to_match(1.0, score, test)


def test_bad_chosen_and_k_raise():
  with pytest.raises(ValueError, match="chosen_test"):
    metrics.normalized_regret(np.nan, [1.0, 2.0])
  with pytest.raises(ValueError, match="chosen_test"):
    metrics.percentile(np.inf, [1.0, 2.0])
  with pytest.raises(ValueError, match="chosen_test"):
    metrics.trials_to_match(np.nan, [1.0, 2.0], [1.0, 2.0])
  with pytest.raises(ValueError, match="test_P"):
    metrics.percentile(1.0, [])
  with pytest.raises(ValueError, match="at least 1"):
    metrics.random_k_probabilities([1.0, 2.0], 0)
  with pytest.raises(ValueError, match="at most"):
    metrics.random_k_probabilities([1.0, 2.0], 3)
  with pytest.raises(TypeError):
    metrics.random_k_probabilities([1.0, 2.0], 1.5)


# --- random_k_probabilities ----------------------------------------------------------------------

_SCORES_NO_TIES = [0.3, -1.0, 2.5, 0.7, 1.1, -0.2, 4.0]
_SCORES_TIES = [1.0, 2.0, 1.0, 3.0, 2.0, 2.0, 0.0]
_SCORES_ALL_TIED = [1.0] * 7


@pytest.mark.parametrize("score", [_SCORES_NO_TIES, _SCORES_TIES, _SCORES_ALL_TIED])
@pytest.mark.parametrize("k", range(1, 8))
def test_probabilities_match_enumeration(score, k):
  expected = [float(p) for p in _brute_probabilities(score, k)]
  np.testing.assert_allclose(
    metrics.random_k_probabilities(score, k), expected, rtol=1e-9, atol=1e-15
  )


@pytest.mark.parametrize("k", [1, 2, 17, 300, 15000, 29999, 30000])
def test_probabilities_large_pool_exact(k):
  pool_size = 30000
  score = np.random.default_rng(k).permutation(pool_size).astype(np.float64)
  probs = metrics.random_k_probabilities(score, k)
  assert probs.shape == (pool_size,)
  assert np.all(probs >= 0.0)
  assert probs.sum() == pytest.approx(1.0, abs=1e-12)
  # Spot-check ranks (score value == ascending rank here) against exact integer arithmetic.
  total = math.comb(pool_size, k)
  for rank in {pool_size - 1, pool_size - 2, pool_size - 50, pool_size // 2, k - 1, 10}:
    exact = math.comb(rank, k - 1) / total if rank >= k - 1 else 0.0
    if exact < 1e-40:  # flushed to zero by design
      continue
    assert probs[score == rank][0] == pytest.approx(exact, rel=1e-8)


def test_probabilities_sum_to_one_with_ties():
  score = np.random.default_rng(0).integers(0, 50, size=5000).astype(np.float64)
  for k in [1, 3, 100, 4999, 5000]:
    assert metrics.random_k_probabilities(score, k).sum() == pytest.approx(1.0, abs=1e-12)


def test_probabilities_follow_the_input_order():
  score = np.array(_SCORES_TIES)
  perm = np.random.default_rng(0).permutation(score.size)
  np.testing.assert_allclose(
    metrics.random_k_probabilities(score[perm], 3), metrics.random_k_probabilities(score, 3)[perm]
  )


# --- random_k_expected -----------------------------------------------------------------------------


def _pool(seed, size=200, ties=False):
  rng = np.random.default_rng(seed)
  test = rng.normal(size=size)
  score = test + rng.normal(size=size)
  if ties:
    score = np.round(score)
  return score, test


@pytest.mark.parametrize("ties", [False, True])
def test_random_1_is_the_pool_average(ties):
  score, test = _pool(0, ties=ties)
  got = metrics.random_k_expected(score, test, 1)
  assert got["test_score"] == pytest.approx(test.mean())
  regrets = [metrics.normalized_regret(t, test) for t in test]
  percentiles = [metrics.percentile(t, test) for t in test]
  assert got["normalized_regret"] == pytest.approx(np.mean(regrets))
  assert got["percentile"] == pytest.approx(np.mean(percentiles))


def test_random_all_is_the_best_by_score():
  score, test = _pool(1)
  top = np.argmax(score)
  got = metrics.random_k_expected(score, test, score.size)
  assert got["test_score"] == pytest.approx(test[top])
  assert got["normalized_regret"] == pytest.approx(metrics.normalized_regret(test[top], test))
  assert got["percentile"] == pytest.approx(metrics.percentile(test[top], test))


def test_random_all_averages_over_tied_best_scores():
  got = metrics.random_k_expected([1.0, 3.0, 3.0], [0.0, 1.0, 2.0], 3)
  assert got["test_score"] == pytest.approx(1.5)
  assert got["percentile"] == pytest.approx((2 / 3 + 1) / 2)


def test_expected_test_is_monotone_when_test_follows_score():
  # Monotone whenever test is a non-decreasing function of score; not in general (see below).
  score, _ = _pool(2, ties=True)
  test = np.tanh(score)
  curve = [metrics.random_k_expected(score, test, k)["test_score"] for k in range(1, 201)]
  assert np.all(np.diff(curve) >= -1e-12)
  assert curve[-1] > curve[0]


def test_expected_metrics_match_enumeration():
  score, test = _SCORES_TIES, [3, 1, 4, 1, 5, 9, 2]
  for k in range(1, 8):
    probs = [float(p) for p in _brute_probabilities(score, k)]
    regret = sum(p * metrics.normalized_regret(t, test) for p, t in zip(probs, test))
    pct = sum(p * metrics.percentile(t, test) for p, t in zip(probs, test))
    got = metrics.random_k_expected(score, test, k)
    assert got["test_score"] == pytest.approx(float(_brute_expected_test(score, test, k)))
    assert got["normalized_regret"] == pytest.approx(regret)
    assert got["percentile"] == pytest.approx(pct)


# --- trials_to_match -------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "chosen, expected",
  [
    (0.0, 1.0),
    (2.5, 1.0),  # E[random_1] = 2.5
    (3.0, 2.0),  # E[random_2] = 10/3
    (3.5, 3.0),  # E[random_3] = 3.75
    (3.75, 3.0),  # an exact tie counts as a match
    (4.0, 4.0),
    (4.5, math.inf),
  ],
)
def test_trials_to_match_hand_example(chosen, expected):
  values = [4.0, 1.0, 3.0, 2.0]
  assert metrics.trials_to_match(chosen, values, values) == expected


@pytest.mark.parametrize(
  "chosen, expected",
  [
    (2.0, 1.0),
    (3.0, 3.0),
    (3.15, 4.0),
    (3.2, 4.0),
    (3.21, math.inf),
  ],
)
def test_trials_to_match_non_monotone_expectation(chosen, expected):
  # E[random_k] for k = 1..5 is 2.0, 2.6, 3.1, 3.2, 3.0: it falls at k = 5 because the best
  # candidate by score is not the best by test, so a bisection over k would answer inf for 3.2.
  assert metrics.trials_to_match(chosen, [0, 1, 2, 3, 4], [2, 0, 1, 4, 3]) == expected


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("noise", [0.5, 100.0])
def test_trials_to_match_agrees_with_a_full_scan(ties, noise):
  # Large enough that k beyond the first blocks uses the truncated top-of-pool window.
  rng = np.random.default_rng(3)
  test = rng.normal(size=400)
  score = test + noise * rng.normal(size=400)
  if ties:
    score = np.round(score, 1)
  curve = np.array([metrics.random_k_expected(score, test, k)["test_score"] for k in range(1, 401)])
  targets = np.r_[
    np.quantile(curve, [0.0, 0.3, 0.6, 0.9]), curve.max() - 1e-6, curve.max() + 1e-6, test.max()
  ]
  for chosen in targets:
    hits = np.flatnonzero(curve >= chosen)
    expected = float(hits[0] + 1) if hits.size else math.inf
    assert metrics.trials_to_match(chosen, score, test) == expected


def test_trials_to_match_single_candidate():
  assert metrics.trials_to_match(1.0, [0.0], [1.0]) == 1.0
  assert metrics.trials_to_match(1.5, [0.0], [1.0]) == math.inf


# --- property test against brute force --------------------------------------------------------------


@st.composite
def _small_pools(draw):
  size = draw(st.integers(1, 6))
  # Few distinct scores so that ties are common; small integer tests keep expectations exact.
  score = draw(st.lists(st.integers(0, 3), min_size=size, max_size=size))
  test = draw(st.lists(st.integers(-3, 3), min_size=size, max_size=size))
  chosen = Fraction(draw(st.integers(-8, 8)), 2)
  return score, test, chosen


@settings(max_examples=150, deadline=None)
@given(_small_pools())
def test_random_k_matches_brute_force(pool):
  score, test, chosen = pool
  for k in range(1, len(score) + 1):
    np.testing.assert_allclose(
      metrics.random_k_probabilities(score, k),
      [float(p) for p in _brute_probabilities(score, k)],
      rtol=1e-9,
      atol=1e-15,
    )
    assert metrics.random_k_expected(score, test, k)["test_score"] == pytest.approx(
      float(_brute_expected_test(score, test, k)), abs=1e-12
    )
  assert metrics.trials_to_match(float(chosen), score, test) == _brute_trials_to_match(
    chosen, score, test
  )
