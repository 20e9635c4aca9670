"""Synthetic meta-datasets with a known structure, for tests, examples and sanity checks.

Scores follow a random smooth function of the architecture encoding with a shared across-task
component and a component that varies with the task's (observed) meta-features, plus noise:

    score(t, a) = prior(a) + relatedness * <mf_t, W phi(a)> + hidden * <h_t, W' phi(a)> + noise,

phi random features and h_t a task's factors that no meta-feature shows. So a value network that
uses meta-features can beat the best-on-average architecture when `relatedness` is high, and
cannot when it is 0; with `hidden` > 0 tasks differ in ways that only results on the task itself
reveal (what few-shot refinement is for).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tarch.space import Categorical, Float, Integer, Space


def default_space() -> Space:
  """A small mixed space: two categorical, one integer (log) and one float (log) choice."""
  return Space("synthetic", (
      Categorical("op", ("conv", "pool", "identity", "attention")),
      Categorical("activation", ("relu", "gelu", "tanh")),
      Integer("width", 8, 256, log=True),
      Float("learning_rate", 1e-4, 1e-1, log=True),
  ))


def make_frames(space: Space | None = None, num_tasks: int = 8, archs_per_task: int = 64,
                num_features: int = 3, relatedness: float = 1.0, noise: float = 0.05,
                seeds: int = 1, seed: int = 0, hidden: float = 0.0
                ) -> tuple[Space, pd.DataFrame, pd.DataFrame]:
  """Builds (space, runs_df, tasks_df) in the meta-dataset format of `tarch.runs`.

  Args:
    space: the search space (default `default_space()`).
    num_tasks: tasks T, named task_00, task_01, ...
    archs_per_task: architectures sampled independently for each task.
    num_features: meta-feature columns mf_0, ...
    relatedness: weight of the meta-feature-dependent part of the score.
    noise: std of the validation noise; test noise is drawn independently.
    seeds: rows per (task, architecture), each with its own noise (averaged on load).
    seed: numpy seed.
    hidden: weight of a task-specific part that no meta-feature reveals (each task's own random
      factors, drawn from a separate stream, so 0 leaves the other parts as they were).
  """
  import jax  # Sampling uses the space's own jax sampler so every architecture is valid.

  space = space or default_space()
  rng = np.random.default_rng(seed)
  num_random = 16
  proj = rng.normal(size=(space.dim, num_random))
  w_prior = rng.normal(size=num_random)
  w_task = rng.normal(size=(num_features, num_random))
  mf = rng.normal(size=(num_tasks, num_features))
  enc = np.asarray(space.sample(jax.random.key(seed), num_tasks * archs_per_task))
  archs = space.decode_many(enc)
  enc = np.stack([space.encode(a) for a in archs])  # integers and floats as written to the table
  phi = np.sin(enc @ proj)
  hidden_rng = np.random.default_rng([seed, 1])
  w_hidden = hidden_rng.normal(size=(num_features, num_random))
  h = hidden_rng.normal(size=(num_tasks, num_features))
  rows = []
  for t in range(num_tasks):
    for i in range(t * archs_per_task, (t + 1) * archs_per_task):
      mean = (phi[i] @ w_prior + relatedness * (mf[t] @ w_task) @ phi[i]
              + hidden * (h[t] @ w_hidden) @ phi[i])
      for _ in range(seeds):
        rows.append({
            "task": f"task_{t:02d}", **archs[i],
            "score": mean + noise * rng.normal(),
            "test_score": mean + noise * rng.normal(),
            "cost": float(np.exp(enc[i].sum())),
        })
  tasks = pd.DataFrame({"task": [f"task_{t:02d}" for t in range(num_tasks)],
                        **{f"mf_{j}": mf[:, j] for j in range(num_features)}})
  return space, pd.DataFrame(rows), tasks
