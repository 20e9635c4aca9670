"""Baselines that choose an architecture for a held-out task without a value network.

Each scores the pool by a weighted mean, over training tasks, of per-task percentiles (scores
are not comparable across tasks; percentiles are), from one `tarch.tables.PercentileTable`:

- `best_on_average`: every training task weighted equally;
- `knn`: all weight on the training task nearest in standardised meta-features;
- the task kernel (`tarch.task_kernel`): a Gaussian kernel of the meta-feature distance, its
  bandwidth chosen by leave-one-task-out over the training tasks.

All are pure functions of device arrays (training tasks and pool are masks), used inside the
compiled simulation (`tarch.simulate`) and from the host alike.

Shape letters: T tasks, A architectures, F meta-features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tarch import tables


def best_in_pool(score_A: jax.Array, pool_A: jax.Array) -> jax.Array:
  """Index of the pool member (`pool_A` true) with the highest score; ties: the first."""
  return jnp.argmax(jnp.where(pool_A, score_A, -jnp.inf)).astype(jnp.int32)


def best_on_average(table: tables.PercentileTable, train_T: jax.Array,
                    pool_A: jax.Array) -> jax.Array:
  """The pool member with the best mean percentile over the training tasks."""
  return best_in_pool(table.scores(jnp.asarray(train_T, jnp.float32)), pool_A)


def nearest_task(z_TxF: jax.Array, train_T: jax.Array, task: jax.Array) -> jax.Array:
  """The training task closest to `task` in (standardised) meta-features `z_TxF`."""
  sq_T = jnp.where(train_T, jnp.sum((z_TxF - z_TxF[task]) ** 2, -1), jnp.inf)
  return jnp.argmin(sq_T)


def knn(table: tables.PercentileTable, z_TxF: jax.Array, train_T: jax.Array, task: jax.Array,
        pool_A: jax.Array) -> jax.Array:
  """The pool member best on the training task nearest to `task` in meta-features."""
  onehot_T = jnp.arange(train_T.shape[0]) == nearest_task(z_TxF, train_T, task)
  return best_in_pool(table.scores(onehot_T.astype(jnp.float32)), pool_A)
