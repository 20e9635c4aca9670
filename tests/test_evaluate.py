"""Baselines and the per-fold evaluation."""

import jax
import numpy as np
import pandas as pd
import pytest

from tarch import baselines, evaluate, meta_train, runs
from tarch import value_net as vn
from tarch.infer import InferConfig
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
  return ds.arch_keys[arch_index]


def test_best_on_average_uses_mean_percentile(table_ds):
  pool = np.arange(table_ds.num_archs)
  # Over t0 and t1, percentiles: a .25/.25, b .75/1, c 1/.5, d .5/.75 -> b.
  assert _op(table_ds, pool[baselines.best_on_average(table_ds, [0, 1], pool)]) == "op=b"


def test_knn_uses_the_nearest_task(table_ds):
  pool = np.arange(table_ds.num_archs)
  assert baselines.nearest_task(table_ds, [0, 1], 2) == 0
  assert _op(table_ds, pool[baselines.knn(table_ds, [0, 1], 2, pool)]) == "op=c"


def test_task_kernel_weights_nearby_tasks():
  """Two families of tasks with opposite preferences, told apart by a meta-feature: the
  leave-one-task-out bandwidth is finite, and a new task gets its own family's best."""
  space = Space("s", (Categorical("op", ("a", "b", "c", "d")),))
  rng = np.random.default_rng(0)
  rows, mf = [], []
  for t in range(12):
    family = t % 2
    scores = [4, 3, 2, 1] if family else [1, 2, 3, 4]
    rows += [{"task": f"t{t}", "op": op, "score": s + 0.1 * rng.normal()}
             for op, s in zip("abcd", scores)]
    mf.append(family + 0.05 * rng.normal())
  ds = runs.from_frames(space, pd.DataFrame(rows),
                        pd.DataFrame({"task": [f"t{t}" for t in range(12)], "mf": mf}))
  pool = np.arange(ds.num_archs)
  kernel, metrics = baselines.task_kernel_model(ds, range(1, 12))
  mean = metrics.mean(0)
  assert np.isfinite(kernel.bandwidth) and mean.max() > mean[-1]  # the last bandwidth is inf
  # Each held-out task gets its own family's best although the other family is the majority
  # of the training tasks (and so best on average): t0 (family 0) is held out from 6 tasks of
  # family 1 and 5 of family 0, t11 (family 1) from 6 of family 0 and 5 of family 1.
  assert _op(ds, pool[baselines.task_kernel(ds, range(1, 12), 0, pool)]) == "op=d"
  assert _op(ds, pool[baselines.best_on_average(ds, range(1, 12), pool)]) == "op=a"
  assert _op(ds, pool[baselines.task_kernel(ds, range(11), 11, pool)]) == "op=a"
  assert _op(ds, pool[baselines.best_on_average(ds, range(11), pool)]) == "op=d"


def test_task_kernel_is_best_on_average_when_meta_features_do_not_matter():
  """Every bandwidth scores the same when tasks agree: the tie goes to the widest (inf)."""
  space = Space("s", (Categorical("op", ("a", "b", "c")),))
  rows = [{"task": f"t{t}", "op": op, "score": s} for t in range(5)
          for op, s in zip("abc", (1, 3, 2))]
  ds = runs.from_frames(space, pd.DataFrame(rows),
                        pd.DataFrame({"task": [f"t{t}" for t in range(5)],
                                      "mf": [0.0, 3.0, 1.0, 7.0, 2.0]}))
  assert baselines.task_kernel_model(ds, range(5))[0].bandwidth == np.inf


def test_unseen_pool_member_takes_its_nearest_evaluated_architecture(table_ds):
  weight = np.array([0.0, 0.0, 1.0])  # only t2, which never evaluated d
  d = table_ds.arch_keys.index("op=d")
  scores = baselines.table_scores(table_ds, weight, np.array([d]))
  assert np.isfinite(scores).all()


def test_evaluate_fold_reports_every_method(synthetic_ds):
  net = vn.ValueNetConfig(interaction_hidden=(16,), task_hidden=(4,))
  train = meta_train.TrainConfig(ensemble_size=2, num_steps=40, eval_every=20, batch_size=32,
                                 eval_size=64)
  model, _ = meta_train.fit(synthetic_ds, net, train, train_tasks=range(1, 6))
  rows = evaluate.evaluate_fold(synthetic_ds, 0, model, InferConfig(num_restarts=8, num_steps=10),
                                jax.random.key(0))
  by_method = {r["method"]: r for r in rows}
  assert tuple(by_method) == evaluate.METHODS
  assert by_method["oracle"]["normalized_regret"] == 0.0
  assert by_method["oracle"]["percentile"] == 1.0
  assert by_method["random_1"]["normalized_regret"] > by_method["random_50"]["normalized_regret"]
  pool = {synthetic_ds.arch_keys[a] for a in synthetic_ds.arch_R[synthetic_ds.task_rows(0)]}
  for method in ("tarch", "tarch_rank", "best_on_average", "knn", "task_kernel", "oracle"):
    assert by_method[method]["architecture"] in pool
    assert 0.0 <= by_method[method]["percentile"] <= 1.0
  assert by_method["tarch_rank"]["predicted"] >= by_method["tarch"]["predicted"] - 1e-6
