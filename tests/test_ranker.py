"""The blend of V, task kernels and best_on_average follows the evidence of the held-out tasks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tarch import infer, meta_train, runs, simulate, synthetic
from tarch import value_net as vn

NET = vn.ValueNetConfig(interaction_hidden=(16,), task_hidden=(8,))
TRAIN = meta_train.TrainConfig(ensemble_size=4, num_steps=300, eval_every=50, batch_size=64,
                               eval_size=256)
_simulate = jax.jit(simulate.simulate_batch, static_argnums=0)


def _every_fold(relatedness: float, seed: int, hidden: float = 0.0):
  """Every leave-one-task-out fold of a synthetic meta-dataset: (blend [T, C], regret [T, K])."""
  space, runs_df, tasks_df = synthetic.make_frames(
      num_tasks=10, archs_per_task=32, relatedness=relatedness, noise=0.05, seed=seed,
      hidden=hidden)
  ds = runs.from_frames(space, runs_df, tasks_df)
  static, dyn = simulate.split(ds.space, NET, TRAIN,
                               infer.InferConfig(num_restarts=4, num_steps=10))
  n = ds.num_tasks
  dyn_n = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,)), dyn)
  result = jax.device_get(_simulate(static, dyn_n, simulate.Data.build(ds, TRAIN.target),
                                    jnp.arange(n, dtype=jnp.int32)))
  return result.blend_C, result.regret_K


@pytest.mark.parametrize("seed", [1, 2])
def test_without_task_structure_the_blend_is_best_on_average(seed):
  """Scores that do not depend on the meta-features: the held-out tasks show no gain from V or
  the kernels beyond their noise, so nearly all weight stays on best_on_average."""
  blend, _ = _every_fold(relatedness=0.0, seed=seed)
  assert blend[:, -1].mean() >= 0.8


@pytest.mark.parametrize("seed", [1, 2])
def test_when_tasks_differ_unseen_by_the_meta_features_the_blend_stays_near_best_on_average(
    seed):
  """Tasks that differ, but not in anything their meta-features show (the held-out task's own
  factors): kernels and V find chance patterns at best, so most weight stays on
  best_on_average."""
  blend, _ = _every_fold(relatedness=0.0, seed=seed, hidden=1.0)
  assert blend[:, -1].mean() >= 0.6


@pytest.mark.parametrize("seed", [1, 2])
def test_with_strong_task_structure_the_blend_leaves_best_on_average(seed):
  blend, regret = _every_fold(relatedness=3.0, seed=seed)
  assert blend[:, -1].mean() <= 0.5
  tarch = simulate.METHODS.index("tarch")
  best_on_average = simulate.METHODS.index("best_on_average")
  assert regret[:, tarch].mean() < regret[:, best_on_average].mean()
