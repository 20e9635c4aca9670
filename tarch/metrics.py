"""Metrics for leave-one-task-out evaluation of one pick on one held-out task.

The held-out task has a candidate pool of P architectures, each with a validation `score_P` (what
random search would see) and a `test_score` `test_P` (what every pick is judged by). This module
holds pure-numpy primitives over those two float64 arrays:

- `normalized_regret` and `percentile` judge one chosen test score against the pool.
- `random_k_probabilities` and `random_k_expected` give the exact distribution and expectation of
  random search with k trainings ("random_k": k distinct candidates drawn uniformly, the best by
  score kept), using order statistics instead of sampling.
- `trials_to_match` is the smallest k for which random_k is, in expectation, as good as a pick.

How random_k's probabilities are computed: with candidates sorted by score and s the distance from
the top (s = 0 is the best score), the kept candidate is at distance s with probability

  w_k(s) = C(P-1-s, k-1) / C(P, k) = (k / P) * (P-1-s)! / (P-k-s)! * (P-k)! / (P-1)!,

evaluated as exp of a sum of log-factorials so that nothing overflows for P in the tens of
thousands; the relative error is about 1e-10 at P = 30000. Ties in score are split evenly: when
several tied candidates are drawn the kept one is uniformly random among them, so every member of a
tie group gets the group's mean probability.

Shape letters: P pool members, B values of k evaluated together, X any number of chosen scores.
"""

from __future__ import annotations

import math
import operator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import special

# `trials_to_match` evaluates random_k only on the S best-by-score ranks, with S chosen so that the
# mass left out, at most exp(-k * S / P), is below exp(-_LOG_TAIL) (about 1e-11, well inside the
# rounding slack below); this turns O(P) work per k into O(P / k).
_LOG_TAIL = 25.0

# Slack, relative to max |test|, when comparing an expected test score with a pick: expectations
# carry rounding of about 1e-10 relative, and a pick equal to a pool member's test score must match
# a random_k whose expectation equals it mathematically.
_MATCH_RTOL = 1e-8


# Probabilities below 1e-40 are set to 0: together they weigh less than P * 1e-40, and products of
# smaller ones with test scores can fall into the subnormal range, where arithmetic is orders of
# magnitude slower on common CPUs.
_LOG_TINY = math.log(1e-40)


def _as_vector(name: str, x) -> np.ndarray:
  """Returns `x` as a non-empty, finite, 1-D float64 array or raises ValueError."""
  arr = np.asarray(x, dtype=np.float64)
  if arr.ndim != 1:
    raise ValueError(f"{name} must be 1-D, got shape {arr.shape}.")
  if arr.size == 0:
    raise ValueError(f"{name} must be non-empty.")
  if not np.all(np.isfinite(arr)):
    raise ValueError(
      f"{name} must be finite; it has {np.count_nonzero(~np.isfinite(arr))} "
      "NaN or infinite entries."
    )
  return arr


def _as_pool(score_P, test_P) -> tuple[np.ndarray, np.ndarray]:
  """Validates a pool's score and test arrays (1-D, finite, non-empty, same length)."""
  score = _as_vector("score_P", score_P)
  test = _as_vector("test_P", test_P)
  if score.shape != test.shape:
    raise ValueError(
      f"score_P and test_P must have the same length, got {score.size} and {test.size}."
    )
  return score, test


def _as_scalar(name: str, x) -> float:
  """Returns `x` as a finite float or raises ValueError."""
  arr = np.asarray(x, dtype=np.float64)
  if arr.ndim != 0:
    raise ValueError(f"{name} must be a scalar, got shape {arr.shape}.")
  value = float(arr)
  if not math.isfinite(value):
    raise ValueError(f"{name} must be finite, got {value}.")
  return value


def _as_k(k, pool_size: int) -> int:
  """Validates the number of random-search trials: an integer in [1, pool_size]."""
  k = operator.index(k)
  if k < 1:
    raise ValueError(f"k must be at least 1, got {k}.")
  if k > pool_size:
    raise ValueError(f"k must be at most the pool size {pool_size}, got {k}.")
  return k


def _regret(chosen_X: np.ndarray, test_P: np.ndarray) -> np.ndarray:
  """Normalized regret of each chosen test score against a validated pool."""
  best = test_P.max()
  median = np.median(test_P)
  if best > median:
    return (best - chosen_X) / (best - median)
  # Degenerate pool: at least half the pool ties at the best, so a median pick is already optimal.
  # Scale shortfalls by the full range instead, so worse picks still register.
  worst = test_P.min()
  if best > worst:
    return np.where(chosen_X >= best, 0.0, (best - chosen_X) / (best - worst))
  return np.zeros_like(chosen_X)


def _percentile(chosen_X: np.ndarray, sorted_test_P: np.ndarray) -> np.ndarray:
  """Fraction of an ascending-sorted pool with test score <= each chosen score."""
  return np.searchsorted(sorted_test_P, chosen_X, side="right") / sorted_test_P.size


def normalized_regret(chosen_test: float, test_P) -> float:
  """Regret of a pick, normalized so that 0 is the best candidate and 1 a median pick.

  regret = (best - chosen) / (best - median), with best = max(test_P) and median =
  np.median(test_P). It is negative if `chosen_test` beats every candidate.

  Degenerate pool (best == median, i.e. at least half the pool ties at the best): the result is
  0.0 if chosen >= best, else (best - chosen) / (best - min(test_P)) when best > min(test_P), and
  0.0 when every candidate has the same test score.

  Args:
    chosen_test: test score of the picked architecture.
    test_P: test scores of the task's candidate pool.

  Returns:
    The normalized regret as a float.

  Raises:
    ValueError: if `test_P` is empty, not 1-D or not finite, or `chosen_test` is not finite.
  """
  test = _as_vector("test_P", test_P)
  chosen = _as_scalar("chosen_test", chosen_test)
  return float(_regret(np.float64(chosen), test))


def normalized_regrets(chosen_X, test_P) -> np.ndarray:
  """`normalized_regret` of each of several picks against one pool (float64 `[X]`)."""
  return _regret(_as_vector("chosen_X", chosen_X), _as_vector("test_P", test_P))


def percentile(chosen_test: float, test_P) -> float:
  """Fraction of the pool whose test score is <= the pick's (1.0 for the best candidate).

  Args:
    chosen_test: test score of the picked architecture.
    test_P: test scores of the task's candidate pool.

  Returns:
    A float in [0, 1].

  Raises:
    ValueError: if `test_P` is empty, not 1-D or not finite, or `chosen_test` is not finite.
  """
  test = _as_vector("test_P", test_P)
  chosen = _as_scalar("chosen_test", chosen_test)
  return float(np.count_nonzero(test <= chosen) / test.size)


def _log_factorials(n: int) -> np.ndarray:
  """log(m!) for m = 0..n."""
  return special.gammaln(np.arange(n + 1) + 1.0)


def _top_weights(log_fact: np.ndarray, k_lo: int, k_hi: int, window: int) -> np.ndarray:
  """w_k(s) for s < window (distance from the best score), k in [k_lo, k_hi); shape (window, B)."""
  P = log_fact.size - 1
  ks_B = np.arange(k_lo, k_hi)
  # The term log((P-k-s)!) depends only on k + s, so one vector viewed through a sliding window
  # gives the whole (window, B) block without a gather. A negative argument means the rank cannot
  # hold the best of k draws: +inf there makes the weight exactly 0.
  arg = P - k_lo - np.arange(window + ks_B.size - 1)
  log_fact_diag = np.full(arg.size, np.inf)
  log_fact_diag[arg >= 0] = log_fact[arg[arg >= 0]]
  log_fact_ks = sliding_window_view(log_fact_diag, ks_B.size)[:window]
  log_w = log_fact[P - 1 - np.arange(window)][:, None] - log_fact_ks
  log_w += np.log(ks_B / P) + log_fact[P - ks_B] - log_fact[P - 1]
  log_w[log_w < _LOG_TINY] = -np.inf
  return np.exp(log_w, out=log_w)


def _tie_groups(sorted_score_P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Start index and size of each run of equal values in an ascending-sorted array."""
  starts = np.flatnonzero(np.r_[True, sorted_score_P[1:] != sorted_score_P[:-1]])
  sizes = np.diff(np.r_[starts, sorted_score_P.size])
  return starts, sizes


def _tie_mean(values_P: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
  """Replaces each value by the mean over its tie group (groups given by `_tie_groups`)."""
  if starts.size == values_P.size:
    return values_P
  return np.repeat(np.add.reduceat(values_P, starts) / sizes, sizes)


def _sorted_by_score(score_P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Stable ascending order of the scores, with the tie groups of the sorted scores."""
  order = np.argsort(score_P, kind="stable")
  starts, sizes = _tie_groups(score_P[order])
  return order, starts, sizes


def _probabilities(score_P: np.ndarray, k: int) -> np.ndarray:
  """`random_k_probabilities` on validated inputs."""
  P = score_P.size
  order, starts, sizes = _sorted_by_score(score_P)
  # Weights come out best-first; reverse them to ascending-score order.
  p_sorted = _top_weights(_log_factorials(P), k, k + 1, P)[::-1, 0]
  # Renormalizing removes the ~1e-10 drift of the log-factorial differences from the total.
  p_sorted = _tie_mean(p_sorted / p_sorted.sum(), starts, sizes)
  p = np.empty(P)
  p[order] = p_sorted
  return p


def random_k_probabilities(score_P, k: int) -> np.ndarray:
  """Probability that each candidate is the one random search with k trainings keeps.

  Random search draws k distinct candidates uniformly without replacement and keeps the one with
  the best score. With candidates ranked by ascending score (rank r, 0-based) and no ties, the
  probability is C(r, k-1) / C(P, k). Among tied scores the kept candidate is uniformly random, so
  each member of a tie group gets the group's mean probability.

  Args:
    score_P: validation scores of the candidate pool (higher is better).
    k: number of candidates drawn, 1 <= k <= P.

  Returns:
    float64 array of shape (P,), in the order of `score_P`, summing to 1.

  Raises:
    ValueError: if `score_P` is empty, not 1-D or not finite, or k is outside [1, P].
    TypeError: if k is not an integer.
  """
  score = _as_vector("score_P", score_P)
  return _probabilities(score, _as_k(k, score.size))


def random_k_expected(score_P, test_P, k: int) -> dict[str, float]:
  """Exact expected metrics of random search with k trainings on the held-out task.

  Args:
    score_P: validation scores of the candidate pool (what random search sees).
    test_P: test scores of the same candidates (what the kept one is judged by).
    k: number of candidates drawn, 1 <= k <= P.

  Returns:
    A dict with the expectations, over the kept candidate, of "test_score", "normalized_regret"
    and "percentile" (the latter two as defined by `normalized_regret` and `percentile`).

  Raises:
    ValueError: if the arrays are empty, not 1-D, not finite or of different lengths, or k is
      outside [1, P].
    TypeError: if k is not an integer.
  """
  score, test = _as_pool(score_P, test_P)
  p = _probabilities(score, _as_k(k, score.size))
  # Percentiles of the pool's own members are cheapest with the queries sorted too.
  test_order = np.argsort(test)
  sorted_test = test[test_order]
  # Elementwise products and sums rather than `@`: a long 1-D BLAS dot product may start threads,
  # which is slower than the whole computation when the CPUs are busy.
  return {
    "test_score": float(np.sum(p * test)),
    "normalized_regret": float(np.sum(p * _regret(test, test))),
    "percentile": float(np.sum(p[test_order] * _percentile(sorted_test, sorted_test))),
  }


def _k_blocks(pool_size: int):
  """Yields (k_lo, k_hi) blocks covering 1..pool_size, growing geometrically."""
  k_lo = 1
  while k_lo <= pool_size:
    # Per-k work shrinks like P / k, so blocks grow with k to keep per-block work roughly even;
    # a growth ratio near 1 wastes little on the window sized for the block's smallest k.
    k_hi = min(pool_size + 1, k_lo + max(8, k_lo // 4))
    yield k_lo, k_hi
    k_lo = k_hi


def trials_to_match(chosen_test: float, score_P, test_P) -> float:
  """Smallest number of random-search trainings whose expected test score reaches a pick.

  Returns the smallest k in 1..P with E[test score of random_k] >= `chosen_test`, where random_k
  is as in `random_k_probabilities`. The comparison allows a rounding slack of 1e-8 * max|test_P|.

  The expectation is not monotone in k in general: when the best candidate by score has a poor
  test score, random_P is worse than random_1. So k = 1, 2, ... is scanned in blocks, each k
  evaluated only on the best-by-score ranks that carry non-negligible probability (O(P / k) work),
  stopping at the first match. A pick that no k can reach is detected early: the kept candidate's
  probabilities never increase with distance from the top, so E[random_k] is at most the largest
  mean test score of a best-by-score prefix of the ranks random_k can still keep.

  Args:
    chosen_test: test score of the pick to match.
    score_P: validation scores of the candidate pool.
    test_P: test scores of the same candidates.

  Returns:
    k as a float, or float('inf') if even the best k falls short.

  Raises:
    ValueError: if the arrays are empty, not 1-D, not finite or of different lengths, or
      `chosen_test` is not finite.
  """
  score, test = _as_pool(score_P, test_P)
  chosen = _as_scalar("chosen_test", chosen_test)
  P = score.size
  order, starts, sizes = _sorted_by_score(score)
  # Tie-averaged test score by distance from the top: E[random_k] = sum_s w_k(s) * top_test[s].
  top_test = _tie_mean(test[order], starts, sizes)[::-1].copy()
  slack = _MATCH_RTOL * float(np.abs(test).max())
  target = chosen - slack
  prefix_bound = np.maximum.accumulate(np.cumsum(top_test) / np.arange(1, P + 1))
  log_fact = _log_factorials(P)
  # Row 0 gives the weighted test score, row 1 the total weight, in one matrix product.
  test_and_one = np.stack([top_test, np.ones(P)])
  for k_lo, k_hi in _k_blocks(P):
    window = min(P, math.ceil(_LOG_TAIL * P / k_lo))
    if prefix_bound[window - 1] < target - slack:
      return float("inf")
    weighted, total = test_and_one[:, :window] @ _top_weights(log_fact, k_lo, k_hi, window)
    # Dividing by the total spreads the truncated tail mass and the rounding evenly.
    expected = weighted / total
    hits = np.flatnonzero(expected >= target)
    if hits.size:
      return float(k_lo + hits[0])
  return float("inf")
