"""Per-task score normalisation: raw scores are not comparable across tasks, ranks within one are.

`normalize_scores` maps each task's scores to a common scale by one of `METHODS`; meta-training
uses it for its regression target and the baselines for their per-task percentiles.

Shape letters: R results (one score each), T tasks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.special


def _group_sizes(task_R: np.ndarray, num_tasks: int) -> np.ndarray:
  return np.bincount(task_R, minlength=num_tasks)


def _average_rank(score_R: np.ndarray, task_R: np.ndarray) -> np.ndarray:
  """1-based rank of each score within its task, ties given their average rank."""
  return pd.Series(score_R).groupby(task_R).rank(method="average").to_numpy(np.float64)


def _percentile(score_R, task_R, num_tasks):
  return _average_rank(score_R, task_R) / _group_sizes(task_R, num_tasks)[task_R]


def _zscore(score_R, task_R, num_tasks):
  n = _group_sizes(task_R, num_tasks)
  safe_n = np.maximum(n, 1)
  mean = np.bincount(task_R, weights=score_R, minlength=num_tasks) / safe_n
  centered = score_R - mean[task_R]
  std = np.sqrt(np.bincount(task_R, weights=centered**2, minlength=num_tasks) / safe_n)
  # A task whose scores are all equal carries no ranking signal: map it to zeros, not NaN.
  std_R = std[task_R]
  return np.divide(centered, std_R, out=np.zeros_like(centered), where=std_R > 0)


def _gauss_rank(score_R, task_R, num_tasks):
  n = _group_sizes(task_R, num_tasks)[task_R]
  return scipy.special.ndtri((_average_rank(score_R, task_R) - 0.5) / n)


_NORMALIZERS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "percentile": _percentile,
    "zscore": _zscore,
    "gauss_rank": _gauss_rank,
}
# The valid `method` arguments of `normalize_scores`.
METHODS = tuple(_NORMALIZERS)


def check_normalization(method: str) -> None:
  """Raises ValueError naming the valid methods if `method` is not one of them."""
  if method not in _NORMALIZERS:
    raise ValueError(f"unknown normalisation {method!r}; valid: {sorted(_NORMALIZERS)}")


def normalize_scores(score_R: np.ndarray, task_R: np.ndarray, num_tasks: int,
                     method: str) -> np.ndarray:
  """Normalises scores within each task, since raw scores are not comparable across tasks.

  Methods:
    "percentile": average rank / n, in (0, 1]; tied scores share their average rank.
    "zscore": (score - task mean) / task std (population); a task with std 0 maps to zeros.
    "gauss_rank": inverse normal CDF of (average rank - 0.5) / n; symmetric around 0.

  Args:
    score_R: float [R] scores, higher is better; must be finite.
    task_R: int [R] task index of each score, in [0, num_tasks).
    num_tasks: T.
    method: one of `METHODS`: "percentile", "zscore", "gauss_rank".

  Returns:
    float64 [R] normalised scores, in the same order as `score_R`.
  """
  check_normalization(method)
  score_R = np.asarray(score_R, dtype=np.float64)
  task_R = np.asarray(task_R)
  if score_R.ndim != 1 or score_R.shape != task_R.shape:
    raise ValueError(f"score_R and task_R must be 1-D of equal length, got shapes "
                     f"{score_R.shape} and {task_R.shape}")
  if task_R.size and (task_R.min() < 0 or task_R.max() >= num_tasks):
    raise ValueError(f"task_R must lie in [0, {num_tasks})")
  if not np.all(np.isfinite(score_R)):
    raise ValueError("score_R must be finite")
  return _NORMALIZERS[method](score_R, task_R.astype(np.int64), num_tasks)
