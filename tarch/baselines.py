"""Baselines that choose an architecture for a held-out task without a value network.

Both table baselines score each pool member by a weighted mean, over training tasks, of its
per-task percentile (scores are not comparable across tasks; percentiles are):

- `best_on_average`: every training task weighted equally;
- `knn`: all weight on the training task nearest in standardised meta-features.

A pool member that was never evaluated on a weighted training task takes the value of the
nearest evaluated architecture (in encoding space), so the baselines also work on meta-datasets
where each task evaluated a different random sample of architectures.

Shape letters: T tasks, A architectures, P pool members, E encoding width, F meta-features.
"""

from __future__ import annotations

import numpy as np

from tarch import runs as runs_lib


def table_scores(ds: runs_lib.MetaDataset, weight_T: np.ndarray, pool_arch_P: np.ndarray
                 ) -> np.ndarray:
  """Weighted mean per-task percentile of each pool member: float64 [P].

  Args:
    ds: the meta-dataset.
    weight_T: non-negative weight of each task (0 for the held-out task).
    pool_arch_P: architecture indices (into `ds.arch_keys`) of the pool.
  """
  weight_T = np.asarray(weight_T, np.float64)
  pct_R = runs_lib.normalize_scores(ds.score_R, ds.task_R, ds.num_tasks, "percentile")
  w_R = weight_T[ds.task_R]
  total_A = np.bincount(ds.arch_R, weights=w_R * pct_R, minlength=ds.num_archs)
  mass_A = np.bincount(ds.arch_R, weights=w_R, minlength=ds.num_archs)
  seen = np.flatnonzero(mass_A > 0)
  if seen.size == 0:
    raise ValueError("no architecture was evaluated on a task with positive weight")
  mean_A = np.full(ds.num_archs, np.nan)
  mean_A[seen] = total_A[seen] / mass_A[seen]
  pool_arch_P = np.asarray(pool_arch_P)
  out = mean_A[pool_arch_P]
  unseen = np.flatnonzero(np.isnan(out))
  seen_enc = ds.enc_AxE[seen].astype(np.float64)
  seen_sq = (seen_enc**2).sum(1)
  for chunk in np.array_split(unseen, max(1, len(unseen) // 256)):
    # Squared distances up to a per-row constant, in chunks: no [unseen, seen, E] array.
    d = seen_sq[None] - 2 * ds.enc_AxE[pool_arch_P[chunk]].astype(np.float64) @ seen_enc.T
    out[chunk] = mean_A[seen[np.argmin(d, axis=1)]]
  return out


def best_on_average(ds: runs_lib.MetaDataset, train_tasks, pool_arch_P) -> int:
  """Pool position of the member with the best mean percentile over `train_tasks`."""
  weight_T = np.zeros(ds.num_tasks)
  weight_T[np.asarray(list(train_tasks))] = 1.0
  return int(np.argmax(table_scores(ds, weight_T, pool_arch_P)))


def nearest_tasks(ds: runs_lib.MetaDataset, train_tasks, task: int) -> np.ndarray:
  """Training tasks, nearest to `task` first, by distance in meta-features standardised over
  the training tasks (ties keep `train_tasks` order)."""
  train_tasks = np.asarray(list(train_tasks))
  f = ds.features_TxF
  std = f[train_tasks].std(0)
  std = np.where(std > 1e-12, std, 1.0)
  d = (((f[train_tasks] - f[task]) / std)**2).sum(1)
  return train_tasks[np.argsort(d, kind="stable")]


def nearest_task(ds: runs_lib.MetaDataset, train_tasks, task: int) -> int:
  """Training task closest to `task` in meta-features standardised over the training tasks."""
  return int(nearest_tasks(ds, train_tasks, task)[0])


def knn(ds: runs_lib.MetaDataset, train_tasks, task: int, pool_arch_P) -> int:
  """Pool position of the best member on the nearest training task (by meta-features)."""
  weight_T = np.zeros(ds.num_tasks)
  weight_T[nearest_task(ds, train_tasks, task)] = 1.0
  return int(np.argmax(table_scores(ds, weight_T, pool_arch_P)))
