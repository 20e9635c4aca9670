"""Training many child models on tasks: the offline phase's plan, and architectures on one task.

`Plan` is every (task, architecture, seed) triple the offline phase trains, in a fixed order,
cut into the batches of `tarch.child.batch_plan`; it trains one batch at a time and turns its
results into rows of the runs table, so that a job (`experiments.generate`) only decides which
batches are missing and writes them. `train_on_task` trains a list of architectures on one task
(the demo's real trainings of picked architectures). Both can split their batches over the
devices of a mesh (`tarch.mesh.data_mesh`) and both score a failed training (non-finite loss)
as the task's majority-class predictor, what a model that learned nothing gets.

Shape letters: M models, T tasks, A architectures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh

from tarch import child
from tarch import fingerprint as fingerprint_lib
from tarch import mesh as mesh_lib
from tarch import space as space_lib
from tarch import tasks as tasks_lib


class Plan:
  """Every model of an offline generation, in a fixed order, and the batches that train them.

  Model m trains architecture `arch_M[m]` on task `task_M[m]` with seed index `seed_M[m]` and
  PRNG key `key_M[m]` (`fold_in(key(seed + 1), m)`, so independent of batching); models are
  numbered task-major, then architecture, then seed. The plan depends only on its arguments, so a
  resumed job finds the same batches.
  """

  def __init__(self, child_config: child.ChildConfig, tasks: Sequence[tasks_lib.Task], *,
               num_architectures: int, num_seeds: int, batch_models: int, seed: int):
    """Samples `num_architectures` architectures of the family with `seed` and plans every
    (task, architecture, seed index < `num_seeds`) triple in batches of at most `batch_models`."""
    if num_architectures < 1 or num_seeds < 1:
      raise ValueError("num_architectures and num_seeds must be >= 1")
    self.child = child_config
    # Held to space.json's rules now, not when the table is written after every training: a
    # one-value range (max_layers=1, min_width == max_width, max_dropout=0) is not a choice.
    self.space = space_lib.Space.from_dict(child_config.space.to_dict(),
                                           source="the child family's space (config.child)")
    self.num_seeds, self.batch_models, self.seed = num_seeds, batch_models, seed
    self.padded = tasks_lib.pad_tasks(list(tasks))
    enc = self.space.sample(jax.random.key(seed), num_architectures)
    self.archs = self.space.decode_many(np.asarray(enc))
    t, a, s = np.meshgrid(np.arange(len(tasks)), np.arange(len(self.archs)),
                          np.arange(num_seeds), indexing="ij")
    self.task_M, self.arch_M, self.seed_M = t.ravel(), a.ravel(), s.ravel()
    self.hp = child.hyperparams([self.archs[i] for i in self.arch_M])
    self.batches = child.batch_plan(self.child, self.hp.width, batch_models)
    base_key = jax.random.key(seed + 1)
    self.key_M = jax.vmap(lambda m: jax.random.fold_in(base_key, m))(jnp.arange(len(self.task_M)))

  @property
  def num_models(self) -> int:
    return len(self.task_M)

  def batch_cost(self, index: int) -> float:
    """Relative compute of batch `index`: its models times the multiply-adds of one example at
    the padded shapes (an ETA that counts models alone is wrong when widths differ)."""
    width, members = self.batches[index]
    return len(members) * float(child.multiply_adds(
        self.child.max_layers, width, self.padded.x_TxNxD.shape[2], self.padded.num_classes))

  def fingerprint(self) -> str:
    """A 16-hex id of what the batches compute: the plan's arguments, the tasks' data and
    tarch's source (`tarch.fingerprint`), so that batches of other code or data are not reused."""
    settings = {"child": dataclasses.asdict(self.child), "num_architectures": len(self.archs),
                "num_seeds": self.num_seeds, "batch_models": self.batch_models,
                "seed": self.seed}
    padded = self.padded
    return fingerprint_lib.fingerprint(
        settings, "\n".join(padded.names), padded.x_TxNxD, padded.y_TxN, padded.train_TxN,
        padded.val_TxN, padded.test_TxN, padded.feature_TxD, padded.classes_T)

  def task_data(self, mesh: Mesh | None = None) -> child.TaskData:
    """The tasks as device arrays for `train_batch`, on every device of `mesh` when given."""
    data = child.task_data(self.padded)
    return data if mesh is None else mesh_lib.replicate(data, mesh)

  def train_batch(self, data: child.TaskData, index: int, mesh: Mesh | None = None
                  ) -> pd.DataFrame:
    """Trains batch `index` (split over `mesh`'s devices when given); returns its rows of the
    runs table, plus `model`, the model id the table is sorted by.

    Columns: `model`, `task`, one column per choice, `seed`, `score` (validation accuracy),
    `test_score`, `cost` (training FLOPs, `child.training_flops`: what training the model
    costs), `params` (parameter count), `flops_per_example` (FLOPs of one example's forward
    pass), `train_loss`, `status` ("ok" or "failed"), `failure` (why, "" when ok).
    """
    width, members = self.batches[index]
    result = child.train_batch(self.child, data, self.hp, self.task_M, self.key_M, members,
                               width, self.batch_models, mesh)
    task = self.task_M[members]
    padded = self.padded
    val, test, failed = _floor_failed(padded, task, result)
    hp = jax.tree.map(lambda x: x[members], self.hp)
    features = padded.feature_TxD.sum(1)[task]
    classes = padded.classes_T[task]
    rows = {"model": members, "task": [padded.names[t] for t in task]}
    for name in self.space.names:
      rows[name] = [self.archs[a][name] for a in self.arch_M[members]]
    rows.update({
        "seed": self.seed_M[members],
        "score": val.astype(np.float64),
        "test_score": test.astype(np.float64),
        "cost": child.training_flops(self.child, hp, features, classes).astype(np.float64),
        "params": child.parameter_count(hp, features, classes).astype(np.float64),
        "flops_per_example": 2.0 * child.multiply_adds(hp.num_layers, hp.width, features,
                                                       classes),
        "train_loss": np.where(failed, np.nan, result.train_loss).astype(np.float64),
        "status": np.where(failed, "failed", "ok"),
        "failure": [f"non-finite training loss or parameters at step {s}" if s >= 0 else ""
                    for s in result.failed_step],
    })
    return pd.DataFrame(rows)


def train_on_task(config: child.ChildConfig, padded: tasks_lib.PaddedTasks, task: int,
                  archs: Sequence[dict], seeds: int, key: jax.Array, *, batch_models: int = 256,
                  mesh: Mesh | None = None) -> dict[str, np.ndarray]:
  """Trains each architecture `seeds` times on one task and averages over seeds.

  Args:
    config: the child family and its training budget.
    padded: the padded tasks; `task` indexes them.
    task: the task to train on.
    archs: architectures as `Space.decode` returns them.
    seeds: trainings per architecture, each with its own key from `key`.
    key: PRNG key of all trainings.
    batch_models: models per compiled program.
    mesh: when given, every batch is split over its devices (`tarch.mesh.data_mesh`).

  Returns:
    "val", "test": mean validation and test accuracy per architecture `[A]`, a failed training
    counted as the task's majority-class predictor, as in the generated meta-dataset;
    "failed": failed trainings per architecture `[A]`.
  """
  data = child.task_data(padded)
  if mesh is not None:
    data = mesh_lib.replicate(data, mesh)  # once, not per batch
  hp_M = child.hyperparams([a for a in archs for _ in range(seeds)])
  key_M = jax.random.split(key, len(archs) * seeds)
  task_M = np.full(len(archs) * seeds, task)
  val_M, test_M = np.zeros(len(task_M)), np.zeros(len(task_M))
  failed_M = np.zeros(len(task_M), bool)
  for width, members in child.batch_plan(config, hp_M.width, batch_models):
    result = child.train_batch(config, data, hp_M, task_M, key_M, members, width, batch_models,
                               mesh)
    val_M[members], test_M[members], failed_M[members] = _floor_failed(padded, task_M[members],
                                                                       result)
  shape = (len(archs), seeds)
  return {"val": val_M.reshape(shape).mean(1), "test": test_M.reshape(shape).mean(1),
          "failed": failed_M.reshape(shape).sum(1)}


def _floor_failed(padded: tasks_lib.PaddedTasks, task_M: np.ndarray, result: child.Result
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Validation and test accuracy with failed models scored as the majority class; failed."""
  failed = np.asarray(result.failed_step) >= 0
  floor_val, floor_test = tasks_lib.majority_accuracy(padded)
  return (np.where(failed, floor_val[task_M], result.val_accuracy),
          np.where(failed, floor_test[task_M], result.test_accuracy), failed)
