"""The choice of ranker: V, or the training tasks' own results under a kernel over tasks.

`tarch.meta_train` trains V; this module decides, on the training tasks that V's ensemble
members held out, whether V or the task kernel (`tarch.task_kernel`) should rank candidates for
a new task. Each training task held out by some member is scored twice: by the member that
first held it out (V ranks the task's evaluated architectures; the mean percentile of its top
`top_quantile` is the metric) and by the task kernel built from the other training tasks (at
the bandwidth chosen by leave-one-task-out). The paired one-standard-error rule over those
tasks keeps V unless the kernel is better by more than a standard error. The kernel's bandwidth
was chosen on the same tasks, which tilts the comparison somewhat toward it.

A pure function of device arrays, so the choice runs inside a compiled, vmapped simulation.

Shape letters: T tasks, A architectures, F meta-features, M ensemble members.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tarch import tables
from tarch import task_kernel as task_kernel_lib
from tarch import value_net as vn
from tarch.meta_train import ValueModel, _one_standard_error_index


class Choice(flax.struct.PyTreeNode):
  """What `choose` compared, as arrays."""

  use_kernel: jax.Array  # bool: the task kernel ranks
  compared: jax.Array  # bool: there were held-out tasks to compare on
  bandwidth: jax.Array  # float32: the kernel's chosen relative bandwidth (inf: equal weights)
  value_net_T: jax.Array  # float32: V's held-out top-quantile percentile per task (NaN: none)
  task_kernel_T: jax.Array  # float32: the kernel's, on the same tasks


def heldout_value_metric(model: ValueModel, table: tables.PercentileTable, features_TxF,
                         held_MxT, top_quantile) -> jax.Array:
  """`[T]`: for each task some member held out, the mean percentile of the architectures that
  member's V ranks in the task's top `top_quantile` (NaN for tasks no member held out)."""
  net = vn.ValueNet(model.config)
  holder_T = jnp.argmax(held_MxT, axis=0)

  def one(t):
    g_D = model.task_embeddings(features_TxF[t])[holder_T[t]]
    params = jax.tree.map(lambda x: x[holder_T[t]], model.params)
    value_A = net.apply(params, g_D, table.enc_AxE, method=vn.ValueNet.value)
    return tables.top_quantile_mean(value_A, table.pct_TxA[t], table.evaluated_TxA[t],
                                    top_quantile)

  metric_T = jax.lax.map(one, jnp.arange(held_MxT.shape[1]))
  return jnp.where(held_MxT.any(0), metric_T, jnp.nan)


def choose(model: ValueModel, table: tables.PercentileTable, features_TxF: jax.Array,
           mask_T: jax.Array, held_MxT: jax.Array, top_quantile: jax.Array,
           enabled: bool | jax.Array = True) -> tuple[ValueModel, Choice]:
  """`model` with the task kernel over the training tasks `mask_T` attached and the ranker
  that picks better on the held-out tasks (`held_MxT` from `tarch.meta_train.train`).

  Without held-out tasks (every member "holds out" every training task) there is nothing to
  compare on, and with fewer than 3 training tasks no bandwidth to choose: V ranks. With
  `enabled` false V ranks too, but the kernel is still attached (it is also a baseline).
  """
  features_TxF = jnp.asarray(features_TxF, jnp.float32)
  kernel = task_kernel_lib.TaskKernel.build(model.scaler.standardize(features_TxF), mask_T,
                                            table)
  kernel, loo_TxB, b = task_kernel_lib.choose_bandwidth(kernel, top_quantile)
  compared = ~jnp.all(jnp.where(mask_T, held_MxT, True)) & (mask_T.sum() >= 3)
  value_T = heldout_value_metric(model, table, features_TxF, held_MxT, top_quantile)
  kernel_T = jnp.where(jnp.isfinite(value_T), loo_TxB[:, b], jnp.nan)
  index = _one_standard_error_index(-jnp.stack([value_T, kernel_T]))  # lower is better
  use_kernel = jnp.asarray(enabled) & compared & (index == 1)
  choice = Choice(use_kernel=use_kernel, compared=compared, bandwidth=kernel.bandwidth,
                  value_net_T=value_T, task_kernel_T=kernel_T)
  return model.replace(kernel=kernel, use_kernel=use_kernel), choice


def describe(choice: Choice) -> dict:
  """A JSON-ready summary of a (host) `Choice`."""
  bandwidth = float(choice.bandwidth)
  return {"ranker": "task_kernel" if bool(choice.use_kernel) else "value_net",
          # JSON has no infinity: the widest bandwidth (equal weights) is written "inf".
          "kernel_bandwidth": bandwidth if np.isfinite(bandwidth) else "inf",
          "heldout_top_percentile": {
              "value_net": _nanmean(choice.value_net_T),
              "task_kernel": _nanmean(choice.task_kernel_T)}}


def _nanmean(x) -> float | None:
  x = np.asarray(x, np.float64)
  return float(np.nanmean(x)) if np.isfinite(x).any() else None
