"""Leave-one-task-out evaluation of one fold: every method's pick for a held-out task, scored.

For a held-out task t, the candidate pool is the set of architectures evaluated on t; every method
sees only t's meta-features and the other tasks' results, and its pick is judged by t's
`test_score` (see `tarch.metrics`). Methods, side by side:

- `tarch`: `tarch.infer` with the pool: gradient inference through the value network, projected
  to the pool, or, when the model's ranker is the task kernel, the pool ranked by it;
- `tarch_rank`: the model's ranker (`ValueModel.score`) scores the whole pool and its best is
  taken;
- `best_on_average`, `knn`, `task_kernel`: the table baselines of `tarch.baselines`;
- `random_1`, `random_10`, `random_50`: exact expectation of random search with k trainings on t
  (k capped at the pool size);
- `oracle`: the pool's best test score.

Fitting the value network is left to the caller, so that the same fold can be evaluated with a
model trained any way (and the experiment layer can checkpoint it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tarch import baselines, metrics
from tarch import infer as infer_lib
from tarch import runs as runs_lib
from tarch.meta_train import ValueModel

RANDOM_KS = (1, 10, 50)
METHODS = ("tarch", "tarch_rank", "best_on_average", "knn", "task_kernel") + tuple(
    f"random_{k}" for k in RANDOM_KS) + ("oracle",)


def evaluate_fold(ds: runs_lib.MetaDataset, task: int, model: ValueModel,
                  infer_config: infer_lib.InferConfig, key: jax.Array) -> list[dict]:
  """Scores every method of `METHODS` on held-out `task`.

  Args:
    ds: the whole meta-dataset; `model` must have been trained without `task`.
    task: index of the held-out task.
    model: value-network ensemble fitted on the other tasks.
    infer_config: settings of the `tarch` method's ascent.
    key: randomness of the ascent.

  Returns:
    One dict per method: task, method, architecture (empty for random_k, whose numbers are
    expectations), test_score, normalized_regret, percentile, trials_to_match, predicted (the
    model's score of the pick, NaN for methods that do not use the model).
  """
  train_tasks = [t for t in range(ds.num_tasks) if t != task]
  rows = ds.task_rows(task)
  pool_arch_P = ds.arch_R[rows]
  score_P, test_P = ds.score_R[rows], ds.test_score_R[rows]
  pool_PxE = jnp.asarray(ds.enc_AxE[pool_arch_P])
  features = jnp.asarray(ds.features_TxF[task], jnp.float32)

  value_P = np.asarray(model.score(features, pool_PxE, infer_config.pessimism))
  inferred = infer_lib.infer(model, ds.space, features, key, infer_config, pool_PxE=pool_PxE)
  picks = {
      "tarch": int(inferred.pool_indices[0]),
      "tarch_rank": int(np.argmax(value_P)),
      "best_on_average": baselines.best_on_average(ds, train_tasks, pool_arch_P),
      "knn": baselines.knn(ds, train_tasks, task, pool_arch_P),
      "task_kernel": baselines.task_kernel(ds, train_tasks, task, pool_arch_P),
      "oracle": int(np.argmax(test_P)),
  }
  out = []
  for method in METHODS:
    row = {"task": ds.task_names[task], "method": method}
    if method in picks:
      p = picks[method]
      chosen = float(test_P[p])
      row.update(
          architecture=ds.arch_keys[pool_arch_P[p]], test_score=chosen,
          normalized_regret=metrics.normalized_regret(chosen, test_P),
          percentile=metrics.percentile(chosen, test_P),
          trials_to_match=metrics.trials_to_match(chosen, score_P, test_P),
          predicted=float(value_P[p]) if method.startswith("tarch") else float("nan"))
    else:
      k = min(int(method.removeprefix("random_")), len(rows))
      expected = metrics.random_k_expected(score_P, test_P, k)
      row.update(architecture="", test_score=expected["test_score"],
                 normalized_regret=expected["normalized_regret"],
                 percentile=expected["percentile"], trials_to_match=float(k),
                 predicted=float("nan"))
    out.append(row)
  return out
