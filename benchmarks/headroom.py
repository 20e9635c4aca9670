"""How much can a pick that trains nothing on the held-out task gain on a meta-dataset?

  python benchmarks/headroom.py --data_dir=DIR/meta_dataset

Leave-one-task-out, scored like `experiments.loto` (normalised regret on `test_score`), for
methods that need no value network, so it runs in seconds and bounds what one can hope for:

- `best_on_average`: the architecture with the best mean percentile on the other tasks;
- `nearest_k`: the same mean over only the k tasks nearest in standardised meta-features (a
  task-aware pick from the table; k = 1 is `experiments.loto`'s knn);
- `random_10`: random search with 10 trainings on the held-out task (exact expectation; with
  fewer architectures, random search with all of them: the column is named after its k);
- `validation_oracle`: train every architecture on the held-out task, keep the best validation
  score (random search with the whole pool): the ceiling of any validation-based pick.

With a runs table of several seeds per (task, architecture) (a `seed` column, as
`experiments.generate` writes), random search and the oracle are also scored on single seeds:
with the validation and test score of one run ("one run"), and with the validation score of one
seed and the test score of another ("independent runs"); `best_on_average (one run)` is its pick
judged on single seeds' test scores, for comparison. The difference between the two is what
random search gains because a training that happens to go well shows it in both its validation
and its test score, and the model kept is that run.

Every task must have evaluated the same architectures (as in a generated meta-dataset).
"""

import argparse

import jax.numpy as jnp
import numpy as np
import pandas as pd

from tarch import baselines, metrics, normalize
from tarch import tables as tables_lib
from tarch import runs as runs_lib

_KS = (5, 10, 20)


def _tables(ds: runs_lib.MetaDataset, arch_keys: tuple[str, ...]):
  """Seed-averaged validation and test score tables `[T, A]`, columns in `arch_keys` order, or
  None if some task did not evaluate some architecture."""
  column = {key: a for a, key in enumerate(arch_keys)}
  if set(ds.arch_keys) != set(column):
    return None
  arch_R = np.array([column[ds.arch_keys[a]] for a in ds.arch_R])
  score, test = np.full((2, ds.num_tasks, len(arch_keys)), np.nan)
  score[ds.task_R, arch_R] = ds.score_R
  test[ds.task_R, arch_R] = ds.test_score_R
  return None if np.isnan(score).any() else (score, test)


def _regret(test_A: np.ndarray, pick: int) -> float:
  return metrics.normalized_regret(float(test_A[pick]), test_A)


def _random_k(score_A, test_A, k: int) -> float:
  return metrics.random_k_expected(score_A, test_A, k)["normalized_regret"]


def _nearest_tasks(ds, train, task) -> np.ndarray:
  """Training tasks, nearest to `task` first, in meta-features standardised over them."""
  f = ds.features_TxF.astype(np.float64)
  std = f[train].std(0)
  z = (f - f[train].mean(0)) / np.where(std > 1e-12, std, 1.0)
  train = np.asarray(train)
  return train[np.argsort(((z[train] - z[task]) ** 2).sum(1), kind="stable")]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data_dir", required=True)
  args = parser.parse_args()
  ds = runs_lib.load_meta_dataset(args.data_dir)  # Validates the directory.
  tables = _tables(ds, ds.arch_keys)
  if tables is None:
    raise SystemExit(f"{args.data_dir}: headroom needs every task to evaluate the same "
                     "architectures")
  score_TxA, test_TxA = tables
  k = min(10, ds.num_archs)
  table = tables_lib.PercentileTable.build(ds)
  every_arch = jnp.ones(ds.num_archs, bool)  # column a of the tables is architecture a
  rows, boa_pick = [], []
  for t in range(ds.num_tasks):
    train = [u for u in range(ds.num_tasks) if u != t]
    train_T = jnp.arange(ds.num_tasks) != t
    boa_pick.append(int(baselines.best_on_average(table, train_T, every_arch)))
    row = {"task": ds.task_names[t], "best_on_average": _regret(test_TxA[t], boa_pick[t]),
           f"random_{k}": _random_k(score_TxA[t], test_TxA[t], k),
           "validation_oracle": _regret(test_TxA[t], int(np.argmax(score_TxA[t])))}
    nearest = _nearest_tasks(ds, train, t)
    for n in _KS:
      weight_T = np.zeros(ds.num_tasks, np.float32)
      weight_T[nearest[:n]] = 1.0
      row[f"nearest_{n}"] = _regret(test_TxA[t], int(np.argmax(table.scores(weight_T))))
    rows.append(row)
  table = pd.DataFrame(rows).set_index("task")

  space, frame = runs_lib.load_runs_frame(args.data_dir, extra_columns=("seed",))
  seeds = sorted(frame["seed"].unique()) if "seed" in frame else []
  note = "no seed column"
  if len(seeds) >= 2:
    tasks_df = pd.DataFrame({"task": list(ds.task_names), **{
        name: ds.features_TxF[:, i] for i, name in enumerate(ds.feature_names)}})
    per_seed = {}
    for s in seeds:
      try:
        per_seed[s] = _tables(runs_lib.from_frames(space, frame[frame["seed"] == s], tasks_df),
                              ds.arch_keys)
      except runs_lib.MetaDatasetError:
        per_seed[s] = None  # e.g. a task that this seed never ran
    if any(v is None for v in per_seed.values()):
      note = "some seed did not run every (task, architecture): single-seed columns skipped"
    else:
      note = ""
      one = {name: np.zeros(ds.num_tasks) for name in ("best_on_average", f"random_{k}",
                                                       "validation_oracle")}
      independent = {name: np.zeros(ds.num_tasks) for name in (f"random_{k}",
                                                               "validation_oracle")}
      for a in seeds:
        for b in seeds:
          val_TxA, tst_TxA = per_seed[a][0], per_seed[b][1]
          out, weight = (one, len(seeds)) if a == b else (independent,
                                                           len(seeds) * (len(seeds) - 1))
          for t in range(ds.num_tasks):
            if a == b:
              out["best_on_average"][t] += _regret(tst_TxA[t], boa_pick[t]) / weight
            out[f"random_{k}"][t] += _random_k(val_TxA[t], tst_TxA[t], k) / weight
            out["validation_oracle"][t] += _regret(tst_TxA[t],
                                                   int(np.argmax(val_TxA[t]))) / weight
      for kind, out in (("one run", one), ("independent runs", independent)):
        for name, values in out.items():
          table[f"{name} ({kind})"] = values
  elif seeds:
    note = "one seed: single-seed columns skipped"

  print(f"{args.data_dir}: {ds.num_tasks} tasks x {ds.num_archs} architectures, "
        f"{len(seeds) or 'unknown'} seeds" + (f" ({note})" if note else ""))
  print("mean normalised regret (lower is better):")
  print(table.mean().round(3).to_string())
  pct_TxA = np.empty_like(score_TxA)
  pct_TxA[ds.task_R, ds.arch_R] = normalize.normalize_scores(ds.score_R, ds.task_R, ds.num_tasks,
                                                             "percentile")
  rho = np.corrcoef(pct_TxA)
  print(f"mean Spearman of validation scores between tasks: "
        f"{rho[~np.eye(len(rho), dtype=bool)].mean():.3f}")


if __name__ == "__main__":
  main()
