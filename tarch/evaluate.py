"""Leave-one-task-out results on the host: one simulation's picks as table rows.

`tarch.simulate` picks and scores in the compiled graph; this module turns one simulation's
`Result` into one row per method of `METHODS`, adding what is exact only in float64 on the host:
each pick's test score as written in the table, `trials_to_match` (order statistics of random
search, `tarch.metrics`), and the rows of random search itself (`random_1`, `random_10`,
`random_50`: the exact expectation with k trainings on the held-out task, k capped at the pool
size), which picks nothing and does not depend on the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tarch import adapters, fewshot, metrics, simulate
from tarch import runs as runs_lib

RANDOM_KS = (1, 10, 50)
METHODS = simulate.METHODS[:-1] + tuple(f"random_{k}" for k in RANDOM_KS) + ("oracle",)
RESULT_COLUMNS = ["task", "method", "architecture", "test_score", "normalized_regret",
                  "percentile", "trials_to_match", "predicted"]


def load_held_out(workdir: str, data_dir: str | None, benchmark: str | None,
                  tasks: Sequence[str] | None) -> tuple[runs_lib.MetaDataset, list[int]]:
  """The meta-dataset (`data_dir`, or a built-in `benchmark` converted into `workdir`) and the
  indices of the tasks to hold out (`tasks` by name; default every task)."""
  ds = runs_lib.load_meta_dataset(adapters.prepare(workdir, data_dir, benchmark))
  if ds.num_tasks < 2:
    raise ValueError(f"{ds.source}: leave-one-task-out needs at least 2 tasks, got "
                     f"{ds.num_tasks}")
  if tasks:
    unknown = sorted(set(tasks) - set(ds.task_names))
    if unknown:
      raise ValueError(f"--tasks names unknown tasks {unknown}; known: {list(ds.task_names)}")
    return ds, ds.task_indices(tasks)
  return ds, list(range(ds.num_tasks))


def degenerate_notes(ds: runs_lib.MetaDataset, tasks: Sequence[int]) -> list[str]:
  """A note for each held-out task whose metrics take a degenerate form (`tarch.metrics`): they
  are defined, but say little, and a reader of the results should know why they are 0."""
  notes = []
  for t in tasks:
    rows = ds.task_rows(t)
    test_P = ds.test_score_R[rows]
    best, median, worst = test_P.max(), np.median(test_P), test_P.min()
    name = ds.task_names[t]
    if len(rows) == 1:
      notes.append(f"task {name!r} evaluated one architecture only: every method picks it "
                   "(normalised regret 0, percentile 1)")
    elif best == worst:
      notes.append(f"task {name!r}: all {len(rows)} architectures have the same test score, "
                   "so every pick has normalised regret 0 and percentile 1")
    elif best == median:
      notes.append(f"task {name!r}: at least half of its {len(rows)} architectures tie at the "
                   "best test score, so a shortfall is scaled by best - worst, not best - median")
  return notes


def result_rows(ds: runs_lib.MetaDataset, outcomes) -> pd.DataFrame:
  """One row per simulation (`tarch.sweep.Outcome`) x method, with the swept values and the
  seed; random search's rows are computed once per task."""
  random_rows, rows = {}, []
  for o in outcomes:
    if o.task not in random_rows:
      random_rows[o.task] = _random_rows(ds, o.task)
    for row in fold_rows(ds, o.task, o.result, random_rows[o.task]):
      rows.append({**o.config, "seed": o.seed, **row})
  return pd.DataFrame(rows)


def _random_rows(ds: runs_lib.MetaDataset, task: int) -> dict[str, dict]:
  rows = ds.task_rows(task)
  score_P, test_P = ds.score_R[rows], ds.test_score_R[rows]
  out = {}
  for k in RANDOM_KS:
    expected = metrics.random_k_expected(score_P, test_P, min(k, len(rows)))
    out[f"random_{k}"] = dict(
        architecture="", test_score=expected["test_score"],
        normalized_regret=expected["normalized_regret"], percentile=expected["percentile"],
        trials_to_match=float(min(k, len(rows))), predicted=float("nan"))
  return out


def fold_rows(ds: runs_lib.MetaDataset, task: int, result: simulate.Result,
              random_rows: dict[str, dict] | None = None) -> list[dict]:
  """One dict per method (task, method, architecture, test_score, normalized_regret,
  percentile, trials_to_match, predicted) for held-out `task`, from a host `Result`
  (`random_rows`: the task's random-search rows, if already computed)."""
  if random_rows is None:
    random_rows = _random_rows(ds, task)
  rows = ds.task_rows(task)
  pool_arch_P = ds.arch_R[rows]
  score_P, test_P = ds.score_R[rows], ds.test_score_R[rows]
  test_of = dict(zip(pool_arch_P.tolist(), test_P.tolist()))
  out = []
  for method in METHODS:
    row = {"task": ds.task_names[task], "method": method}
    if method in simulate.METHODS:
      k = simulate.METHODS.index(method)
      arch = int(result.pick_K[k])
      chosen = test_of[arch]
      row.update(
          architecture=ds.arch_keys[arch], test_score=chosen,
          normalized_regret=float(result.regret_K[k]),
          percentile=float(result.percentile_K[k]),
          trials_to_match=metrics.trials_to_match(chosen, score_P, test_P),
          predicted=float(result.predicted_K[k]))
    else:
      row.update(random_rows[method])
    out.append(row)
  return out


FEWSHOT_METHODS = fewshot.METHODS + ("random",)
FEWSHOT_COLUMNS = ["seed", "task", "method", "budget", "architecture", "test_score",
                   "normalized_regret"]


def fewshot_rows(ds: runs_lib.MetaDataset, outcomes, budget: int,
                 methods: Sequence[str] = fewshot.METHODS) -> pd.DataFrame:
  """One row per few-shot simulation (`tarch.sweep.Outcome` of a `tarch.fewshot.Result`) x
  method x budget b = 1 ... `budget`: the architecture kept after b trainings (best by
  validation score), its test score and normalised regret; `methods` names the results' `_K`
  axes (`tarch.fewshot.methods`). `random` is the exact expectation of random search with b
  trainings (b capped at the pool size), once per task and seed."""
  rows, random_cache = [], {}
  for o in outcomes:
    pool = ds.task_rows(o.task)
    test_of = dict(zip(ds.arch_R[pool].tolist(), ds.test_score_R[pool].tolist()))
    name = ds.task_names[o.task]
    if o.result.kept_KxN.shape[0] != len(methods):
      raise ValueError(f"a few-shot result has {o.result.kept_KxN.shape[0]} methods, "
                       f"expected {len(methods)} ({', '.join(methods)})")
    for k, method in enumerate(methods):
      for b in range(budget):
        arch = int(o.result.kept_KxN[k, b])
        rows.append(dict(seed=o.seed, task=name, method=method, budget=b + 1,
                         architecture=ds.arch_keys[arch], test_score=test_of[arch],
                         normalized_regret=float(o.result.regret_KxN[k, b])))
    if o.task not in random_cache:
      score_P, test_P = ds.score_R[pool], ds.test_score_R[pool]
      random_cache[o.task] = [metrics.random_k_expected(score_P, test_P, min(b, len(pool)))
                              for b in range(1, budget + 1)]
    for b, expected in enumerate(random_cache[o.task], start=1):
      rows.append(dict(seed=o.seed, task=name, method="random", budget=b, architecture="",
                       test_score=expected["test_score"],
                       normalized_regret=expected["normalized_regret"]))
  return pd.DataFrame(rows, columns=FEWSHOT_COLUMNS)
