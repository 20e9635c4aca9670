"""Per-task percentile tables, the table baselines and the task kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from tarch import baselines, normalize, runs, tables, task_kernel
from tarch.space import Categorical, Space


@pytest.fixture(scope="module")
def table_ds():
  """3 tasks over architectures a..d; b is best on average, task t2 resembles t0."""
  space = Space("s", (Categorical("op", ("a", "b", "c", "d")),))
  scores = {"t0": [1, 3, 4, 2], "t1": [1, 4, 2, 3], "t2": [1, 2, 4, 3]}
  rows = [{"task": t, "op": op, "score": s} for t, ss in scores.items()
          for op, s in zip("abcd", ss) if not (t == "t2" and op == "d")]
  tasks = pd.DataFrame({"task": ["t0", "t1", "t2"], "mf": [0.0, 10.0, 0.5]})
  return runs.from_frames(space, pd.DataFrame(rows), tasks)


def _op(ds, arch_index):
  return ds.arch_keys[int(arch_index)]


def _mask(n, tasks):
  return jnp.asarray(np.isin(np.arange(n), list(tasks)))


def test_table_holds_each_tasks_percentiles(table_ds):
  table = tables.PercentileTable.build(table_ds)
  pct_R = normalize.normalize_scores(table_ds.score_R, table_ds.task_R, table_ds.num_tasks,
                                     "percentile")
  np.testing.assert_allclose(np.asarray(table.pct_TxA)[table_ds.task_R, table_ds.arch_R], pct_R,
                             rtol=1e-6)
  evaluated = np.asarray(table.evaluated_TxA)
  assert evaluated.sum() == len(table_ds.task_R)
  d = table_ds.arch_keys.index("op=d")
  assert not evaluated[2, d]
  # One-hot encodings: every other op is equally near d, so t2's entry for d is their mean.
  others = [table_ds.arch_keys.index(f"op={o}") for o in "abc"]
  assert float(table.pct_TxA[2, d]) == pytest.approx(float(np.mean(table.pct_TxA[2, others])))


def test_scores_use_measured_entries_where_any_weighted_task_has_them(table_ds):
  table = tables.PercentileTable.build(table_ds)
  d = table_ds.arch_keys.index("op=d")
  both = np.asarray(table.scores(jnp.array([1.0, 0.0, 1.0])))
  assert both[d] == pytest.approx(float(table.pct_TxA[0, d]))  # t2 never measured d
  only_t2 = np.asarray(table.scores(jnp.array([0.0, 0.0, 1.0])))
  assert only_t2[d] == pytest.approx(float(table.pct_TxA[2, d]))  # nearest-neighbour entry
  assert np.isfinite(only_t2).all()


def test_best_on_average_uses_mean_percentile(table_ds):
  table = tables.PercentileTable.build(table_ds)
  pool = jnp.ones(table_ds.num_archs, bool)
  # Over t0 and t1, percentiles: a .25/.25, b .75/1, c 1/.5, d .5/.75 -> b.
  assert _op(table_ds, baselines.best_on_average(table, _mask(3, [0, 1]), pool)) == "op=b"
  no_b = pool.at[table_ds.arch_keys.index("op=b")].set(False)
  assert _op(table_ds, baselines.best_on_average(table, _mask(3, [0, 1]), no_b)) != "op=b"


def test_knn_uses_the_nearest_task(table_ds):
  table = tables.PercentileTable.build(table_ds)
  z = jnp.asarray(table_ds.features_TxF, jnp.float32)
  pool = jnp.ones(table_ds.num_archs, bool)
  assert int(baselines.nearest_task(z, _mask(3, [0, 1]), 2)) == 0
  assert _op(table_ds, baselines.knn(table, z, _mask(3, [0, 1]), 2, pool)) == "op=c"


def _families():
  """Two families of tasks with opposite preferences, told apart by a meta-feature."""
  space = Space("s", (Categorical("op", ("a", "b", "c", "d")),))
  rng = np.random.default_rng(0)
  rows, mf = [], []
  for t in range(12):
    family = t % 2
    scores = [4, 3, 2, 1] if family else [1, 2, 3, 4]
    rows += [{"task": f"t{t}", "op": op, "score": s + 0.1 * rng.normal()}
             for op, s in zip("abcd", scores)]
    mf.append(family + 0.05 * rng.normal())
  return runs.from_frames(space, pd.DataFrame(rows),
                          pd.DataFrame({"task": [f"t{t}" for t in range(12)], "mf": mf}))


def _kernel(ds, train):
  mask = _mask(ds.num_tasks, train)
  f = np.asarray(ds.features_TxF, np.float64)
  m = np.asarray(mask)
  z = (f - f[m].mean(0)) / np.where(f[m].std(0) > 0, f[m].std(0), 1.0)
  kernel = task_kernel.TaskKernel.build(z, mask, tables.PercentileTable.build(ds))
  return task_kernel.choose_bandwidth(kernel, 0.02)


def test_task_kernel_weights_nearby_tasks():
  """The leave-one-task-out bandwidth is finite, and a new task gets its own family's best
  although the other family is the majority of the training tasks (and so best on average)."""
  ds = _families()
  pool = jnp.ones(ds.num_archs, bool)
  for held, own, majority in ((0, "op=d", "op=a"), (11, "op=a", "op=d")):
    train = [t for t in range(12) if t != held]
    kernel, metrics_TxB, _ = _kernel(ds, train)
    mean = np.asarray(metrics_TxB)[train].mean(0)
    assert np.isfinite(kernel.bandwidth) and mean.max() > mean[-1]  # the last bandwidth is inf
    pick = baselines.best_in_pool(kernel.scores(kernel.features_TxF[held]), pool)
    assert _op(ds, pick) == own
    table = kernel.table
    assert _op(ds, baselines.best_on_average(table, _mask(12, train), pool)) == majority


def test_task_kernel_is_best_on_average_when_meta_features_do_not_matter():
  """Every bandwidth scores the same when tasks agree: the tie goes to the widest (inf)."""
  space = Space("s", (Categorical("op", ("a", "b", "c")),))
  rows = [{"task": f"t{t}", "op": op, "score": s} for t in range(5)
          for op, s in zip("abc", (1, 3, 2))]
  ds = runs.from_frames(space, pd.DataFrame(rows),
                        pd.DataFrame({"task": [f"t{t}" for t in range(5)],
                                      "mf": [0.0, 3.0, 1.0, 7.0, 2.0]}))
  assert float(_kernel(ds, range(5))[0].bandwidth) == np.inf
  assert float(_kernel(ds, range(2))[0].bandwidth) == np.inf  # under 3 tasks: nothing to choose


def test_top_quantile_mean_counts_members_only():
  score = jnp.array([5.0, 4.0, 3.0, 2.0])
  value = jnp.array([1.0, 2.0, 3.0, 4.0])
  members = jnp.array([False, True, True, True])
  assert float(tables.top_quantile_mean(score, value, members, 0.3)) == pytest.approx(2.0)
  assert float(tables.top_quantile_mean(score, value, members, 0.67)) == pytest.approx(2.5)
  assert np.isnan(float(tables.top_quantile_mean(score, value, jnp.zeros(4, bool), 0.5)))


def test_tiny_kernel_weights_still_average():
  """Far tasks' float32 kernel weights can be below 1e-30: a weighted mean stays a mean."""
  table = tables.PercentileTable.create(pct_TxA=[[0.1, 0.5], [0.2, 0.9]],
                                        evaluated_TxA=[[True, False], [True, True]],
                                        enc_AxE=np.eye(2))
  scores = np.asarray(table.scores(jnp.array([1.0, 1e-33])))
  assert scores[1] == pytest.approx(0.9)  # measured by the far task only
  assert scores[0] == pytest.approx(0.1)


def test_top_quantile_mean_ranks_members_first_and_caps_k():
  score = jnp.array([-jnp.inf, 1.0, 0.0])
  value = jnp.array([0.5, 0.6, 0.9])
  members = jnp.array([True, False, True])
  # Two members: -inf ranks after 0.0 but before every non-member.
  assert float(tables.top_quantile_mean(score, value, members, 1.0)) == pytest.approx(0.7)
  assert float(tables.top_quantile_mean(score, value, members, 5.0)) == pytest.approx(0.7)


def test_top_quantile_mean_matches_a_stable_sort():
  """The bisection gives what ranking members first, then by score (stable), gives: ties at the
  cut in index order, infinities, -0.0 equal to 0.0."""
  rng = np.random.default_rng(0)
  top = jax.jit(tables.top_quantile_mean)
  for i in range(60):
    score = (rng.integers(-3, 4, 40) if i % 2 else rng.normal(size=40)).astype(np.float32)
    score[rng.integers(0, 40, 3)] = (-np.inf, np.inf, -0.0)
    value = rng.normal(size=40).astype(np.float32)
    member = rng.uniform(size=40) < 0.7
    q = rng.uniform(0.0, 1.2)
    k = int(np.clip(np.round(q * member.sum()), 1, member.sum()))
    expected = value[np.lexsort((-score, ~member))[:k]].mean()
    assert float(top(score, value, member, q)) == pytest.approx(expected, abs=1e-5)


def test_per_task_rows_list_each_tasks_own_results_and_score_as_the_dense_table(synthetic_ds):
  """Tasks that sampled their own architectures: each task's row list is exactly its evaluated
  columns, and scores over a row list equal the dense scores at those columns."""
  table = tables.PercentileTable.build(synthetic_ds)
  evaluated = np.asarray(table.evaluated_TxA)
  rows, valid = np.asarray(table.rows_TxN), np.asarray(table.valid_TxN)
  assert rows.shape[1] == evaluated.sum(1).max() < evaluated.shape[1]  # disjoint samples
  for t in range(table.num_tasks):
    np.testing.assert_array_equal(rows[t][valid[t]], np.flatnonzero(evaluated[t]))
  weight_T = jnp.linspace(0.1, 1.0, table.num_tasks)
  np.testing.assert_allclose(table.scores(weight_T, table.rows_TxN[2]),
                             np.asarray(table.scores(weight_T))[rows[2]], rtol=1e-6)


def test_kernel_heldout_metrics_over_row_lists_equal_the_dense_masked_ones(synthetic_ds):
  """The leave-one-task-out metrics, computed over each task's own results, are the metrics of
  the dense scores masked to the task's evaluated architectures."""
  table = tables.PercentileTable.build(synthetic_ds)
  z_TxF = jnp.asarray(synthetic_ds.features_TxF, jnp.float32)
  kernel = task_kernel.TaskKernel.build(z_TxF, jnp.ones(table.num_tasks, bool), table)
  got = np.asarray(task_kernel.heldout_metrics(kernel, jnp.float32(0.1)))
  want = [[float(tables.top_quantile_mean(kernel.scores(z_TxF[t], t, jnp.float32(b)),
                                          table.pct_TxA[t], table.evaluated_TxA[t], 0.1))
           for b in task_kernel.BANDWIDTHS] for t in range(table.num_tasks)]
  np.testing.assert_allclose(got, want, rtol=1e-6)
