"""Ranking by the training tasks' own results, weighted by a kernel over tasks.

A smooth value network generalises over architectures, but it cannot hold every detail of each
task's ranking: on a table whose training tasks all evaluated the same architectures, the
top of a task's ranking turns on differences between individual architectures that V smooths
over (BUILD_NOTES.md, "Offline phase: quality"). The table itself keeps them. The task kernel
scores an architecture for a new task by the mean per-task percentile of its results on the
training tasks, each task weighted by

    w_t = exp(-|z - z_t|^2 / (2 (b u)^2)),

z the meta-features standardised over the training tasks, u the median distance between two
training tasks and b a relative bandwidth (`BANDWIDTHS`; inf weights every task equally, which
is best_on_average). It is kernel regression of the new task's percentiles on the training
tasks'. `tarch.meta_train.fit` chooses b, and whether to rank by the task kernel or by V at all,
on held-out training tasks.

An architecture that no weighted task evaluated takes the score of the nearest (in encoding
space) one that some weighted task did.

Shape letters: T tasks, R results, A architectures of the table, E encoding width, F
meta-features, C candidates.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

# Relative bandwidths b, in units of the median distance between training tasks.
BANDWIDTHS = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, float("inf"))


class TaskKernel(flax.struct.PyTreeNode):
  """The training tasks' results and the kernel over them; every field is an array."""

  features_TxF: jax.Array  # float32 meta-features of every task, standardised over training
  train_T: jax.Array  # bool: the tasks whose results may be used
  task_R: jax.Array  # int32 task of each result
  arch_R: jax.Array  # int32 architecture of each result (row of enc_AxE)
  pct_R: jax.Array  # float32 per-task percentile of each result's score, in (0, 1]
  enc_AxE: jax.Array  # float32 encodings of the table's architectures
  unit: jax.Array  # float32 scalar: median distance between two training tasks
  bandwidth: jax.Array  # float32 scalar: relative bandwidth b (inf: equal weights)

  @classmethod
  def build(cls, features_TxF, train_T, task_R, arch_R, pct_R, enc_AxE,
            bandwidth: float = float("inf")) -> TaskKernel:
    """From a meta-dataset's arrays; `features_TxF` must already be standardised."""
    z = np.asarray(features_TxF, np.float64)
    train = np.flatnonzero(np.asarray(train_T))
    sq = ((z[train, None] - z[None, train]) ** 2).sum(-1)[np.triu_indices(len(train), 1)]
    unit = float(np.sqrt(np.median(sq))) if sq.size else 0.0
    return cls(
        features_TxF=jnp.asarray(z, jnp.float32), train_T=jnp.asarray(train_T, bool),
        task_R=jnp.asarray(task_R, jnp.int32), arch_R=jnp.asarray(arch_R, jnp.int32),
        pct_R=jnp.asarray(pct_R, jnp.float32), enc_AxE=jnp.asarray(enc_AxE, jnp.float32),
        unit=jnp.float32(unit if unit > 0 else 1.0), bandwidth=jnp.float32(bandwidth))

  def weights(self, z_F: jax.Array, exclude: jax.Array | int = -1,
              bandwidth: jax.Array | None = None) -> jax.Array:
    """Kernel weight `[T]` of each training task (but `exclude`) for standardised `z_F`."""
    b = self.bandwidth if bandwidth is None else bandwidth
    use_T = self.train_T & (jnp.arange(self.train_T.shape[0]) != exclude)
    sq_T = jnp.sum((self.features_TxF - z_F) ** 2, -1)
    sq_T = jnp.where(use_T, sq_T, jnp.inf)
    # Shifted by the nearest task's distance, so that far-away tasks do not all underflow to 0;
    # an infinite bandwidth gives every training task weight 1.
    w_T = jnp.exp(-0.5 * (sq_T - sq_T.min()) / (b * self.unit) ** 2)
    return jnp.where(use_T, w_T, 0.0)

  def table_scores(self, weight_T: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(weighted mean percentile `[A]`, weight mass `[A]`) of every table architecture."""
    num_archs = self.enc_AxE.shape[0]
    w_R = weight_T[self.task_R]
    total = jax.ops.segment_sum(w_R * self.pct_R, self.arch_R, num_archs)
    mass = jax.ops.segment_sum(w_R, self.arch_R, num_archs)
    return total / jnp.maximum(mass, 1e-30), mass

  def scores(self, z_F: jax.Array, enc_CxE: jax.Array, exclude: jax.Array | int = -1,
             bandwidth: jax.Array | None = None) -> jax.Array:
    """Score `[C]` of each candidate: that of its nearest table architecture that a weighted
    task evaluated (itself, when it is one)."""
    mean_A, mass_A = self.table_scores(self.weights(z_F, exclude, bandwidth))
    candidates = np.asarray(enc_CxE, np.float32)
    return jnp.asarray(_fill(self.enc_AxE, np.asarray(mean_A), np.asarray(mass_A) > 0,
                             candidates, _table_index(self.enc_AxE, candidates)))


def _table_index(enc_AxE: jax.Array, candidates_CxE: np.ndarray) -> np.ndarray:
  """Row of `enc_AxE` equal to each candidate, -1 where none is (int64 `[C]`)."""
  index = {row.tobytes(): a for a, row in enumerate(np.asarray(enc_AxE))}
  return np.array([index.get(row.tobytes(), -1) for row in candidates_CxE], np.int64)


def _fill(enc_AxE, mean_A: np.ndarray, seen_A: np.ndarray, candidates_CxE: np.ndarray,
          table_index_C: np.ndarray) -> np.ndarray:
  """`mean_A` of each candidate that is a seen table architecture (looked up), else of its
  nearest seen one (searched)."""
  found = np.maximum(table_index_C, 0)
  out = mean_A[found]
  missing = (table_index_C < 0) | ~seen_A[found]
  if missing.any():
    out[missing] = np.asarray(_nearest_scores(enc_AxE, jnp.asarray(mean_A), jnp.asarray(seen_A),
                                              jnp.asarray(candidates_CxE[missing])))
  return out


@functools.partial(jax.jit, static_argnames="chunk")
def _nearest_scores(enc_AxE, score_A, seen_A, enc_CxE, chunk: int = 1024):
  """`score_A` of each candidate's nearest seen table architecture, in chunks of candidates so
  that no `[C, A]` array larger than `[chunk, A]` is formed."""
  sq_A = jnp.where(seen_A, jnp.sum(enc_AxE**2, -1), jnp.inf)
  c = enc_CxE.shape[0]
  pad = (-c) % chunk if c > chunk else 0
  x = jnp.pad(enc_CxE, ((0, pad), (0, 0)))
  size = min(chunk, c)

  def nearest(block):
    # Squared distances up to a per-row constant.
    return score_A[jnp.argmin(sq_A[None] - 2 * block @ enc_AxE.T, axis=1)]

  out = jax.lax.map(nearest, x.reshape(-1, size, x.shape[1]))
  return out.reshape(-1)[:c]


@jax.jit
def _table_scores_by_bandwidth(kernel: TaskKernel, task: jax.Array) -> tuple[jax.Array, ...]:
  """Table scores and weight masses `[len(BANDWIDTHS), A]` for training task `task`, predicted
  from the others."""
  z_F = kernel.features_TxF[task]
  mean, mass = zip(*[kernel.table_scores(kernel.weights(z_F, task, jnp.float32(b)))
                     for b in BANDWIDTHS])
  return jnp.stack(mean), jnp.stack(mass)


def top_quantile_mean(score_N: np.ndarray, pct_N: np.ndarray, top_quantile: float) -> float:
  """Mean of `pct_N` over the `top_quantile` fraction (at least one) that `score_N` ranks
  highest: how good a pick by `score_N` is. Ties keep the first in order."""
  k = max(1, round(top_quantile * len(score_N)))
  return float(np.mean(pct_N[np.argsort(-np.asarray(score_N), kind="stable")[:k]]))


def heldout_metrics(kernel: TaskKernel, tasks, top_quantile: float) -> np.ndarray:
  """`[len(tasks), len(BANDWIDTHS)]`: for each training task, the `top_quantile_mean` of its
  own percentiles under the kernel's scores predicted from the other training tasks."""
  task_R, arch_R = np.asarray(kernel.task_R), np.asarray(kernel.arch_R)
  pct_R = np.asarray(kernel.pct_R)
  enc_AxE = np.asarray(kernel.enc_AxE)
  out = np.zeros((len(tasks), len(BANDWIDTHS)))
  for i, t in enumerate(tasks):
    rows = np.flatnonzero(task_R == t)
    mean_BxA, mass_BxA = map(np.asarray, _table_scores_by_bandwidth(kernel, jnp.int32(t)))
    # The task's own architectures, scored as `TaskKernel.scores` would score them.
    out[i] = [top_quantile_mean(
        _fill(kernel.enc_AxE, mean_A, mass_A > 0, enc_AxE[arch_R[rows]], arch_R[rows]),
        pct_R[rows], top_quantile) for mean_A, mass_A in zip(mean_BxA, mass_BxA)]
  return out


def choose_bandwidth(kernel: TaskKernel, top_quantile: float
                     ) -> tuple[TaskKernel, np.ndarray, int]:
  """The kernel with the bandwidth whose leave-one-task-out `heldout_metrics`, averaged over
  the training tasks, is best (ties go to the wider one); those metrics `[T_train, B]`; and the
  chosen bandwidth's position in `BANDWIDTHS`.

  With fewer than three training tasks nothing can be chosen: the bandwidth is inf.
  """
  train = np.flatnonzero(np.asarray(kernel.train_T))
  if len(train) < 3:
    widest = len(BANDWIDTHS) - 1
    return (kernel.replace(bandwidth=jnp.float32(BANDWIDTHS[widest])),
            np.zeros((len(train), len(BANDWIDTHS))), widest)
  metrics = heldout_metrics(kernel, train, top_quantile)
  mean = metrics.mean(0)
  best = max(i for i in range(len(BANDWIDTHS)) if mean[i] >= mean.max() - 1e-12)
  return kernel.replace(bandwidth=jnp.float32(BANDWIDTHS[best])), metrics, best
