"""What ranks candidates for a new task: a blend of V, the task kernel and best_on_average.

`tarch.meta_train` trains V; this module decides, on the training tasks that V's ensemble
members held out, how much to trust it. Five component scores rank a task's architectures
(`COMPONENTS`): V; the training tasks' percentiles under a kernel over tasks at three fixed
bandwidths (`tarch.task_kernel`; nothing is tuned), from one so narrow that the nearest training
task decides to a wide one; and best_on_average, every training task weighted equally. A blend
standardises each component over the candidates and adds them with weights on the simplex
(`BLENDS`, steps of 1/4).

Every candidate blend is judged honestly: each held-out training task is ranked by the member
that held it out and by the kernels and best_on_average of *that member's fit tasks*, so no
component has seen the task it is judged on (the mean percentile of the blend's top
`top_quantile` is the metric). The one-standard-error rule, paired over those tasks, then takes
the simplest blend whose metric is within a standard error of the best, simplest meaning most
weight on best_on_average (then on the kernels from the widest, then V). So the pick falls back to
best_on_average unless the held-out tasks show, beyond their noise, that the meta-features help:
a meta-dataset without task structure gets best_on_average, one with strong structure the
component that uses it.

A pure function of device arrays, so the choice runs inside a compiled, vmapped simulation.

Shape letters: T tasks, A architectures, N one task's evaluated architectures (padded), F
meta-features, M ensemble members, C components, S candidate blends.
"""

from __future__ import annotations

import itertools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tarch import tables
from tarch import task_kernel as task_kernel_lib
from tarch import value_net as vn
from tarch.meta_train import ValueModel, _one_standard_error_index

COMPONENTS = ("value_net", "task_kernel_nearest", "task_kernel_narrow", "task_kernel_wide",
              "best_on_average")
# Relative bandwidths (units of the median distance between training tasks) of the three
# kernels: at 0.05 all the weight is on the nearest task (and on tasks about as near).
KERNEL_BANDWIDTHS = (0.05, 0.5, 1.0)
assert len(COMPONENTS) == len(KERNEL_BANDWIDTHS) + 2  # V, the kernels, best_on_average
VALUE_NET_ONLY = tuple(float(name == "value_net") for name in COMPONENTS)


def _simplex(parts: int, steps: int) -> np.ndarray:
  """Weights `[S, parts]` on the simplex in steps of 1/steps, the simplest first: most weight
  on the last part (best_on_average), then on the one before, and so on."""
  points = [w for w in itertools.product(range(steps + 1), repeat=parts) if sum(w) == steps]
  points.sort(key=lambda w: tuple(-x for x in reversed(w)))
  return np.asarray(points, np.float32) / steps


BLENDS = _simplex(len(COMPONENTS), 4)  # [S, C]; BLENDS[0] is best_on_average alone


class Choice(flax.struct.PyTreeNode):
  """What `choose` compared, as arrays."""

  blend_C: jax.Array  # float32 the chosen weights of `COMPONENTS`
  compared: jax.Array  # bool: there were held-out tasks to compare on
  metric_TxS: jax.Array  # float32 each held-out task's top-quantile percentile under each of
  # `BLENDS` (NaN: the task was not held out)


def standardize(x_A: jax.Array, member_A: jax.Array) -> jax.Array:
  """`x_A` minus its mean over the members, over their standard deviation (0 if constant)."""
  n = jnp.maximum(member_A.sum(), 1)
  mean = jnp.sum(jnp.where(member_A, x_A, 0.0)) / n
  var = jnp.sum(jnp.where(member_A, (x_A - mean) ** 2, 0.0)) / n
  std = jnp.sqrt(var)
  return jnp.where(std > 0, (x_A - mean) / jnp.where(std > 0, std, 1.0), 0.0)


def blend_scores(weight_xC: jax.Array, scores_CxA: jax.Array, member_A: jax.Array) -> jax.Array:
  """The blend `[..., A]` of component scores, each standardised over the candidates
  `member_A`, for one weight vector `[C]` or several `[S, C]`."""
  z_CxA = jax.vmap(standardize, in_axes=(0, None))(scores_CxA, member_A)
  return jnp.tensordot(weight_xC, z_CxA, axes=1)


def table_components(kernel: task_kernel_lib.TaskKernel, z_F: jax.Array,
                     value_A: jax.Array, rows_N: jax.Array | None = None) -> jax.Array:
  """The component scores `[C, A]` of every table architecture (`[C, N]`: of `rows_N`) for a
  task with standardised meta-features `z_F`: V's values `value_A` (of the same
  architectures), then the kernel over `kernel.train_T` at each of `KERNEL_BANDWIDTHS`, then
  best_on_average over the same tasks."""
  kernels = [kernel.scores(z_F, bandwidth=jnp.float32(b), rows_N=rows_N)
             for b in KERNEL_BANDWIDTHS]
  boa = kernel.table.scores(kernel.train_T.astype(jnp.float32), rows_N)
  return jnp.stack([value_A, *kernels, boa])


def heldout_blend_metrics(model: ValueModel, table: tables.PercentileTable, features_TxF,
                          z_TxF: jax.Array, fit_MxT: jax.Array, held_MxT: jax.Array,
                          top_quantile) -> jax.Array:
  """`[T, S]`: for each task some member held out, the mean percentile of the architectures
  each of `BLENDS` ranks in its top `top_quantile`, the components built by the member that
  first held it out from that member's fit tasks (NaN for tasks no member held out)."""
  net = vn.ValueNet(model.config)
  holder_T = jnp.argmax(held_MxT, axis=0)
  blends_SxC = jnp.asarray(BLENDS)

  def one(t):  # over the task's own results only (`rows_TxN`): the others are not members
    m = holder_T[t]
    rows_N, member_N = table.rows_TxN[t], table.valid_TxN[t]
    g_D = model.task_embeddings(features_TxF[t])[m]
    params = jax.tree.map(lambda x: x[m], model.params)
    value_N = net.apply(params, g_D, table.enc_AxE[rows_N], method=vn.ValueNet.value)
    kernel = task_kernel_lib.TaskKernel.build(z_TxF, fit_MxT[m], table)
    scores_CxN = table_components(kernel, z_TxF[t], value_N, rows_N)
    return jax.vmap(lambda score_N: tables.top_quantile_mean(
        score_N, table.pct_TxA[t, rows_N], member_N, top_quantile))(
            blend_scores(blends_SxC, scores_CxN, member_N))

  metric_TxS = jax.lax.map(one, jnp.arange(held_MxT.shape[1]))
  return jnp.where(held_MxT.any(0)[:, None], metric_TxS, jnp.nan)


def choose(model: ValueModel, table: tables.PercentileTable, features_TxF: jax.Array,
           mask_T: jax.Array, held_MxT: jax.Array, top_quantile: jax.Array,
           enabled: bool | jax.Array = True) -> tuple[ValueModel, Choice]:
  """`model` with the training tasks' table (a `TaskKernel` over `mask_T`) attached and the
  blend that picks best on the held-out tasks (`held_MxT` from `tarch.meta_train.train`) by the
  one-standard-error rule.

  Without held-out tasks (every member "holds out" every training task) there is nothing to
  compare on, and with fewer than 3 training tasks no kernel to speak of: V ranks alone. With
  `enabled` false V ranks alone too, but the kernel is still attached (it is also a baseline).
  """
  features_TxF = jnp.asarray(features_TxF, jnp.float32)
  z_TxF = model.scaler.standardize(features_TxF)
  kernel = task_kernel_lib.TaskKernel.build(z_TxF, mask_T, table)
  compared = ~jnp.all(jnp.where(mask_T, held_MxT, True)) & (mask_T.sum() >= 3)
  fit_MxT = mask_T & ~held_MxT
  metric_TxS = heldout_blend_metrics(model, table, features_TxF, z_TxF, fit_MxT, held_MxT,
                                     top_quantile)
  index = _one_standard_error_index(-metric_TxS.T)  # lower is better
  use = jnp.asarray(enabled) & compared
  blend_C = jnp.where(use, jnp.asarray(BLENDS)[index], jnp.asarray(VALUE_NET_ONLY))
  choice = Choice(blend_C=blend_C, compared=compared, metric_TxS=metric_TxS)
  return model.replace(kernel=kernel, blend_C=blend_C), choice


def describe_blend(blend_C) -> dict:
  """`{component: weight}` of a (host) blend."""
  return {name: float(w) for name, w in zip(COMPONENTS, np.asarray(blend_C).tolist())}


def describe(choice: Choice) -> dict:
  """A JSON-ready summary of a (host) `Choice`."""
  metric_S = np.asarray(choice.metric_TxS, np.float64)
  held = np.isfinite(metric_S).all(1)
  chosen = [i for i, w in enumerate(BLENDS) if np.array_equal(w, np.asarray(choice.blend_C))]
  out = {"blend": describe_blend(choice.blend_C), "heldout_tasks": int(held.sum())}
  if held.any():
    out["heldout_top_percentile"] = {
        "best_on_average": float(metric_S[held, 0].mean()),
        "value_net": float(metric_S[held, len(BLENDS) - 1].mean()),
        "chosen": float(metric_S[held, chosen[0]].mean()) if chosen else None}
  return out
