"""Per-task percentile tables: every task's results as a dense `[T, A]` array, jit-friendly.

Scores are not comparable across tasks, percentiles within a task are. The table baselines
(`best_on_average`, `knn`), the task kernels (`tarch.task_kernel`) and the ranker's blend
(`tarch.ranker`) all score an architecture by a weighted mean, over tasks, of
its percentile on each task. With the table dense, that is one matrix-vector product for any
weights, so every such score is a pure function of device arrays that `jax.vmap` batches over
held-out tasks, seeds and bandwidths.

Not every task evaluates every architecture (a benchmark task run on a subset of operations, or
tasks that each sampled their own configurations). `pct_TxA[t, a]` is then the percentile, on
t, of the architectures evaluated on t nearest to a in encoding space (the mean over ties), and
`evaluated_TxA` says which entries were measured. A weighted score uses the measured entries of
an architecture where any weighted task measured it, and the nearest-neighbour entries of every
weighted task only where none did.

Shape letters: T tasks, A architectures of the meta-dataset, N one task's evaluated architectures
(padded), E encoding width, R results.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tarch import normalize
from tarch import runs as runs_lib

# Rows of unevaluated architectures whose nearest evaluated ones are searched per block, so that
# no distance matrix larger than [_NEAREST_BLOCK, evaluated] is formed.
_NEAREST_BLOCK = 2048


class PercentileTable(flax.struct.PyTreeNode):
  """Every task's per-task percentiles over all architectures of a meta-dataset."""

  pct_TxA: jax.Array  # float32 percentile in (0, 1] (nearest evaluated where not evaluated)
  evaluated_TxA: jax.Array  # bool: architecture a was evaluated on task t
  enc_AxE: jax.Array  # float32 encodings of the architectures
  rows_TxN: jax.Array  # int32 each task's evaluated architectures, ascending, padded (N: the
  # most any task evaluated), so that work over one task's own results costs N, not A
  valid_TxN: jax.Array  # bool: the entry of rows_TxN is one of them (not padding)

  @classmethod
  def create(cls, pct_TxA, evaluated_TxA, enc_AxE) -> PercentileTable:
    """From the dense arrays (host values): the per-task row lists are derived."""
    evaluated = np.asarray(evaluated_TxA, bool)
    counts = evaluated.sum(1)
    n = max(int(counts.max(initial=0)), 1)
    valid = np.arange(n) < counts[:, None]
    rows = np.zeros(valid.shape, np.int32)
    rows[valid] = np.nonzero(evaluated)[1]  # row-major: each task's columns, ascending
    return cls(pct_TxA=jnp.asarray(pct_TxA, jnp.float32), evaluated_TxA=jnp.asarray(evaluated),
               enc_AxE=jnp.asarray(enc_AxE, jnp.float32), rows_TxN=jnp.asarray(rows),
               valid_TxN=jnp.asarray(valid))

  @classmethod
  def build(cls, ds: runs_lib.MetaDataset) -> PercentileTable:
    """From a meta-dataset (host work, once per meta-dataset)."""
    pct_R = normalize.normalize_scores(ds.score_R, ds.task_R, ds.num_tasks, "percentile")
    return cls.from_results(ds.task_R, ds.arch_R, pct_R, ds.enc_AxE, ds.num_tasks)

  @classmethod
  def from_results(cls, task_R, arch_R, pct_R, enc_AxE, num_tasks: int) -> PercentileTable:
    """From flat results (each (task, architecture) at most once) and the encodings."""
    task_R, arch_R = np.asarray(task_R, np.int64), np.asarray(arch_R, np.int64)
    enc_AxE = np.asarray(enc_AxE, np.float32)
    num_archs = enc_AxE.shape[0]
    pct = np.zeros((num_tasks, num_archs), np.float32)
    evaluated = np.zeros((num_tasks, num_archs), bool)
    pct[task_R, arch_R] = pct_R
    evaluated[task_R, arch_R] = True
    sq_A = (enc_AxE.astype(np.float64) ** 2).sum(1)
    for t in range(num_tasks):
      seen = np.flatnonzero(evaluated[t])
      unseen = np.flatnonzero(~evaluated[t])
      if seen.size == 0 or unseen.size == 0:
        continue
      seen_enc = enc_AxE[seen].astype(np.float64)
      for block in np.array_split(unseen, -(-unseen.size // _NEAREST_BLOCK)):
        # Squared distances (clipped at 0 against rounding), ties within 1e-9 averaged.
        d = np.maximum(sq_A[block, None] + sq_A[None, seen] - 2 * enc_AxE[block] @ seen_enc.T,
                       0.0)
        tie = d <= d.min(1, keepdims=True) + 1e-9
        pct[t, block] = (tie * pct[t, seen]).sum(1) / tie.sum(1)
    return cls.create(pct, evaluated, enc_AxE)

  @property
  def num_tasks(self) -> int:
    return self.pct_TxA.shape[0]

  def scores(self, weight_T: jax.Array, rows_N: jax.Array | None = None) -> jax.Array:
    """Weighted mean percentile `[A]` of every architecture (or `[N]` of the architectures
    `rows_N`), for non-negative `weight_T`.

    Over the weighted tasks that evaluated the architecture; where none did, over every
    weighted task's nearest evaluated architectures. Weights need not sum to one.
    """
    weight_T = jnp.asarray(weight_T, jnp.float32)
    pct_TxA, evaluated_TxA = self.pct_TxA, self.evaluated_TxA
    if rows_N is not None:
      pct_TxA, evaluated_TxA = pct_TxA[:, rows_N], evaluated_TxA[:, rows_N]
    # Full float32 products: accelerators' default matmul precision (TF32, bfloat16) would round
    # percentiles 1/A apart into ties.
    dot = lambda w, x: jnp.matmul(w, x, precision=jax.lax.Precision.HIGHEST)
    measured_TxA = jnp.where(evaluated_TxA, pct_TxA, 0.0)
    mass_A = dot(weight_T, evaluated_TxA.astype(jnp.float32))
    direct_A = dot(weight_T, measured_TxA) / jnp.where(mass_A > 0, mass_A, 1.0)
    total = weight_T.sum()
    filled_A = dot(weight_T, pct_TxA) / jnp.where(total > 0, total, 1.0)
    return jnp.where(mass_A > 0, direct_A, filled_A)


def top_quantile_mean(score_A: jax.Array, value_A: jax.Array, member_A: jax.Array,
                      top_quantile: jax.Array) -> jax.Array:
  """Mean of `value_A` over the `top_quantile` fraction (at least one) of the members
  (`member_A` true) that `score_A` ranks highest: how good a pick by `score_A` is.

  Ties at the cut keep index order (NaN scores rank last). The count round(top_quantile *
  members) may be traced, so there is no `top_k`; and no sort either, which costs tens of
  milliseconds per call over a table of 26,206 architectures on a CPU, and this runs for every
  held-out task, blend and bandwidth of a simulation. Instead the k-th largest score is found
  by bisection over the 32-bit order-preserving integer image of the floats: 32 counting passes.
  NaN without members.
  """
  n = member_A.sum()
  k = jnp.clip(jnp.round(top_quantile * n), 1, jnp.maximum(n, 1)).astype(jnp.int32)
  key_A = _sortable_key(jnp.where(jnp.isnan(score_A), -jnp.inf, score_A))

  def count_at_least(t):
    return jnp.sum(member_A & (key_A >= t))

  def bisect(_, bounds):  # invariant: count_at_least(lo) >= k; the answer is <= hi
    lo, hi = bounds
    mid = lo + (hi - lo) // 2 + (hi > lo).astype(jnp.uint32)
    ok = count_at_least(mid) >= k
    return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

  cut, _ = jax.lax.fori_loop(0, 33, bisect, (jnp.uint32(0), jnp.uint32(2**32 - 1)))
  above_A = member_A & (key_A > cut)
  tie_A = member_A & (key_A == cut)
  take_A = above_A | (tie_A & (jnp.cumsum(tie_A) <= k - above_A.sum()))
  mean = jnp.sum(jnp.where(take_A, value_A, 0.0)) / k.astype(value_A.dtype)
  return jnp.where(n > 0, mean, jnp.nan)


def _sortable_key(x: jax.Array) -> jax.Array:
  """uint32 keys in the order of the float32 values `x` (-0.0 equal to 0.0; no NaN)."""
  x = jnp.asarray(x, jnp.float32)
  bits = jax.lax.bitcast_convert_type(jnp.where(x == 0, 0.0, x), jnp.uint32)
  negative = (bits >> 31).astype(bool)
  return jnp.where(negative, ~bits, bits | jnp.uint32(2**31))


class TableIndex:
  """The rows of a table's architectures, for repeated lookups (`rows`): the exact-match index
  is built once. Keep one where a large table is searched on every call (`tarch.refine`)."""

  def __init__(self, enc_AxE):
    self.enc_AxE = np.ascontiguousarray(enc_AxE, np.float32)
    self._exact = {row.tobytes(): a for a, row in enumerate(self.enc_AxE)}  # the last of equals

  def rows(self, candidates_CxE) -> np.ndarray:
    """Row of each candidate (host): the equal one, else the nearest (int64 `[C]`).

    Table architectures are looked up exactly; only the others are searched, in blocks.
    """
    enc_AxE = self.enc_AxE
    candidates = np.ascontiguousarray(candidates_CxE, np.float32)
    if candidates.ndim != 2 or candidates.shape[1] != enc_AxE.shape[1]:
      raise ValueError(f"candidates must have shape [C, {enc_AxE.shape[1]}], got "
                       f"{candidates.shape}")
    rows = np.array([self._exact.get(row.tobytes(), -1) for row in candidates], np.int64)
    missing = np.flatnonzero(rows < 0)
    if missing.size:
      sq_A = (enc_AxE.astype(np.float64) ** 2).sum(1)
      for block in np.array_split(missing, -(-missing.size // _NEAREST_BLOCK)):
        d = sq_A[None] - 2 * candidates[block].astype(np.float64) @ enc_AxE.T.astype(np.float64)
        rows[block] = np.argmin(d, axis=1)
    return rows


@functools.lru_cache(maxsize=8)
def _cached_index(enc_bytes: bytes, width: int) -> TableIndex:
  return TableIndex(np.frombuffer(enc_bytes, np.float32).reshape(-1, width))


def table_rows(enc_AxE, candidates_CxE) -> np.ndarray:
  """`TableIndex(enc_AxE).rows(candidates_CxE)`, the index kept for the last few tables (found
  by hashing the table's bytes, a cost per call that a kept `TableIndex` avoids)."""
  enc_AxE = np.ascontiguousarray(enc_AxE, np.float32)
  return _cached_index(enc_AxE.tobytes(), enc_AxE.shape[1]).rows(candidates_CxE)
