"""Baselines that choose an architecture for a held-out task without a value network.

Both table baselines score each pool member by a weighted mean, over training tasks, of its
per-task percentile (scores are not comparable across tasks; percentiles are):

- `best_on_average`: every training task weighted equally;
- `knn`: all weight on the training task nearest in standardised meta-features;
- `task_kernel`: a Gaussian kernel of the meta-feature distance (`tarch.task_kernel`), its
  bandwidth chosen by leave-one-task-out over the training tasks (the widest is
  best_on_average): kernel regression of the held-out task's percentiles on the training
  tasks'.

A pool member that was never evaluated on a weighted training task takes the value of the
nearest evaluated architecture (in encoding space), so the baselines also work on meta-datasets
where each task evaluated a different random sample of architectures.

Shape letters: T tasks, A architectures, P pool members, E encoding width, F meta-features.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from tarch import normalize
from tarch import runs as runs_lib
from tarch import task_kernel as task_kernel_lib


def _percentiles(ds: runs_lib.MetaDataset) -> np.ndarray:
  return normalize.normalize_scores(ds.score_R, ds.task_R, ds.num_tasks, "percentile")


def table_scores(ds: runs_lib.MetaDataset, weight_T: np.ndarray, pool_arch_P: np.ndarray,
                 pct_R: np.ndarray | None = None) -> np.ndarray:
  """Weighted mean per-task percentile of each pool member: float64 [P].

  Args:
    ds: the meta-dataset.
    weight_T: non-negative weight of each task (0 for the held-out task).
    pool_arch_P: architecture indices (into `ds.arch_keys`) of the pool.
    pct_R: the per-task percentiles of `ds.score_R`, if already computed.
  """
  weight_T = np.asarray(weight_T, np.float64)
  if pct_R is None:
    pct_R = _percentiles(ds)
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


def _standardized_features(ds: runs_lib.MetaDataset, train_tasks: np.ndarray) -> np.ndarray:
  """Every task's meta-features standardised with the training tasks' statistics: [T, F]."""
  f = ds.features_TxF.astype(np.float64)
  std = f[train_tasks].std(0)
  std = np.where(std > 1e-12, std, 1.0)
  return (f - f[train_tasks].mean(0)) / std


def nearest_tasks(ds: runs_lib.MetaDataset, train_tasks, task: int) -> np.ndarray:
  """Training tasks, nearest to `task` first, by distance in meta-features standardised over
  the training tasks (ties keep `train_tasks` order)."""
  train_tasks = np.asarray(list(train_tasks))
  z = _standardized_features(ds, train_tasks)
  d = ((z[train_tasks] - z[task])**2).sum(1)
  return train_tasks[np.argsort(d, kind="stable")]


def nearest_task(ds: runs_lib.MetaDataset, train_tasks, task: int) -> int:
  """Training task closest to `task` in meta-features standardised over the training tasks."""
  return int(nearest_tasks(ds, train_tasks, task)[0])


def knn(ds: runs_lib.MetaDataset, train_tasks, task: int, pool_arch_P) -> int:
  """Pool position of the best member on the nearest training task (by meta-features)."""
  weight_T = np.zeros(ds.num_tasks)
  weight_T[nearest_task(ds, train_tasks, task)] = 1.0
  return int(np.argmax(table_scores(ds, weight_T, pool_arch_P)))


def task_kernel_model(ds: runs_lib.MetaDataset, train_tasks, top_quantile: float = 0.02
                      ) -> tuple[task_kernel_lib.TaskKernel, np.ndarray]:
  """The task kernel over `train_tasks`, its bandwidth chosen by leave-one-task-out over them,
  and the metrics it was chosen by (`tarch.task_kernel.choose_bandwidth`)."""
  train_tasks = np.asarray(list(train_tasks))
  train_T = np.zeros(ds.num_tasks, bool)
  train_T[train_tasks] = True
  kernel = task_kernel_lib.TaskKernel.build(
      _standardized_features(ds, train_tasks), train_T, ds.task_R, ds.arch_R, _percentiles(ds),
      ds.enc_AxE)
  kernel, metrics, _ = task_kernel_lib.choose_bandwidth(kernel, top_quantile)
  return kernel, metrics


def task_kernel(ds: runs_lib.MetaDataset, train_tasks, task: int, pool_arch_P) -> int:
  """Pool position of the member with the best kernel-weighted mean percentile
  (`tarch.task_kernel`), the bandwidth chosen on the training tasks."""
  kernel, _ = task_kernel_model(ds, train_tasks)  # holds every task's standardised features
  scores = kernel.scores(kernel.features_TxF[task],
                         jnp.asarray(ds.enc_AxE[np.asarray(pool_arch_P)], jnp.float32))
  return int(np.argmax(np.asarray(scores)))
