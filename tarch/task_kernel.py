"""Ranking by the training tasks' own results, weighted by a kernel over tasks.

A smooth value network generalises over architectures, but it cannot hold every detail of each
task's ranking: on a table whose training tasks all evaluated the same architectures, the
top of a task's ranking turns on differences between individual architectures that V smooths
over (BUILD_NOTES.md, "Offline phase: quality"). The table itself keeps them. The task kernel
scores an architecture for a new task by the mean per-task percentile of its results on the
training tasks (`tarch.tables.PercentileTable`), each task weighted by

    w_t = exp(-|z - z_t|^2 / (2 (b u)^2)),

z the meta-features standardised over the training tasks, u the median distance between two
training tasks and b a relative bandwidth (`BANDWIDTHS`; inf weights every task equally, which
is best_on_average). It is kernel regression of the new task's percentiles on the training
tasks'. `choose_bandwidth` picks b by leave-one-task-out over the training tasks, and
`tarch.ranker` blends the kernel at three fixed bandwidths with V and best_on_average; the
leave-one-task-out choice is the `task_kernel` baseline's.

Everything here is a pure function of device arrays (the training tasks are a mask), so a
whole leave-one-task-out fold that uses it can be `jax.vmap`ped.

Shape letters: T tasks, A architectures of the table, N one task's evaluated architectures
(padded), F meta-features, B bandwidths.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from tarch import tables

# Relative bandwidths b, in units of the median distance between training tasks.
BANDWIDTHS = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, float("inf"))


class TaskKernel(flax.struct.PyTreeNode):
  """The training tasks' results and the kernel over them; every field is an array."""

  features_TxF: jax.Array  # float32 meta-features of every task, standardised over training
  train_T: jax.Array  # bool: the tasks whose results may be used
  table: tables.PercentileTable  # every task's percentiles
  unit: jax.Array  # float32 scalar: median distance between two training tasks
  bandwidth: jax.Array  # float32 scalar: relative bandwidth b (inf: equal weights)

  @classmethod
  def build(cls, z_TxF: jax.Array, train_T: jax.Array, table: tables.PercentileTable,
            bandwidth: float | jax.Array = float("inf")) -> TaskKernel:
    """From standardised meta-features, a training mask and the table (jit-compatible)."""
    z_TxF = jnp.asarray(z_TxF, jnp.float32)
    train_T = jnp.asarray(train_T, bool)
    sq_TxT = jnp.sum((z_TxF[:, None] - z_TxF[None]) ** 2, -1)
    t = train_T.shape[0]
    pair_TxT = train_T[:, None] & train_T[None] & (jnp.arange(t)[:, None] < jnp.arange(t))
    median = jnp.nanmedian(jnp.where(pair_TxT, sq_TxT, jnp.nan))
    unit = jnp.where(jnp.isfinite(median) & (median > 0), jnp.sqrt(median), 1.0)
    return cls(features_TxF=z_TxF, train_T=train_T, table=table, unit=unit.astype(jnp.float32),
               bandwidth=jnp.asarray(bandwidth, jnp.float32))

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

  def scores(self, z_F: jax.Array, exclude: jax.Array | int = -1,
             bandwidth: jax.Array | None = None, rows_N: jax.Array | None = None) -> jax.Array:
    """Kernel-weighted mean percentile `[A]` of every table architecture (`[N]`: of `rows_N`)."""
    return self.table.scores(self.weights(z_F, exclude, bandwidth), rows_N)


def heldout_metrics(kernel: TaskKernel, top_quantile: jax.Array) -> jax.Array:
  """`[T, B]`: for each task, the `tables.top_quantile_mean` of its own percentiles under the
  kernel's scores predicted from the training tasks other than it, at each of `BANDWIDTHS`
  (NaN for tasks that evaluated nothing)."""
  table = kernel.table

  def one(t):  # over the task's own results only (`rows_TxN`): the others are not members
    z_F, rows_N = kernel.features_TxF[t], table.rows_TxN[t]
    return jnp.stack([tables.top_quantile_mean(
        kernel.scores(z_F, t, jnp.float32(b), rows_N), table.pct_TxA[t, rows_N],
        table.valid_TxN[t], top_quantile) for b in BANDWIDTHS])

  return jax.lax.map(one, jnp.arange(kernel.train_T.shape[0]))


def choose_bandwidth(kernel: TaskKernel, top_quantile: jax.Array
                     ) -> tuple[TaskKernel, jax.Array, jax.Array]:
  """The kernel with the bandwidth whose leave-one-task-out `heldout_metrics`, averaged over
  the training tasks, is best (ties go to the wider one); those metrics `[T, B]` (meaningful on
  training tasks); and the chosen bandwidth's position in `BANDWIDTHS`.

  With fewer than three training tasks nothing can be chosen: the bandwidth is inf.
  """
  metrics_TxB = heldout_metrics(kernel, top_quantile)
  train_T = kernel.train_T
  mean_B = jnp.sum(jnp.where(train_T[:, None], metrics_TxB, 0.0), 0) / jnp.maximum(
      train_T.sum(), 1)
  near_best_B = mean_B >= mean_B.max() - 1e-6
  widest = len(BANDWIDTHS) - 1
  best = widest - jnp.argmax(near_best_B[::-1])  # the widest of the near-best
  best = jnp.where(train_T.sum() >= 3, best, widest)
  return (kernel.replace(bandwidth=jnp.asarray(BANDWIDTHS, jnp.float32)[best]), metrics_TxB,
          best)
