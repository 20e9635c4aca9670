"""How much can a pick that trains nothing on the held-out task gain on a meta-dataset?

  python benchmarks/headroom.py --data_dir=DIR/meta_dataset

Leave-one-task-out, scored like `experiments.loto` (normalised regret on `test_score`), for
methods that need no value network, so it runs in seconds and bounds what one can hope for:

- `best_on_average`: the architecture with the best mean percentile on the other tasks;
- `nearest_k`: the same mean over only the k tasks nearest in standardised meta-features (a
  task-aware pick from the table; k = 1 is `experiments.loto`'s knn);
- `random_10`: random search with 10 trainings on the held-out task (exact expectation);
- `validation_oracle`: train every architecture on the held-out task, keep the best validation
  score (random search with the whole pool): the ceiling of any validation-based pick.

With a runs table of several seeds per (task, architecture) (a `seed` column, as
`experiments.generate` writes), `random_10` and `validation_oracle` are also scored on single
seeds: with the validation and test score of one run ("one run"), and with the validation score
of one seed and the test score of another ("independent runs"); `best_on_average (one run)` is
its pick judged on single seeds' test scores, for comparison. The difference between the two
is what random search gains because a training that happens to go well shows it in both its
validation and its test score, and the model kept is that run.
"""

import argparse
import os

import numpy as np
import pandas as pd

from tarch import metrics
from tarch import runs as runs_lib

_KS = (5, 10, 20)


def _tables(frame: pd.DataFrame, names: list[str], choices: list[str]):
  """Validation and test score tables `[T, A]` (seed-averaged rows of `frame`)."""
  mean = frame.groupby(["task", *choices], sort=False)[["score", "test_score"]].mean()
  score = mean["score"].unstack(choices).reindex(names)
  test = mean["test_score"].unstack(choices).reindex(score.index)[score.columns]
  if score.isna().any().any():
    raise ValueError("headroom needs every task to evaluate the same architectures")
  return score.to_numpy(), test.to_numpy()


def _regret(test_A: np.ndarray, pick: int) -> float:
  return metrics.normalized_regret(float(test_A[pick]), test_A)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data_dir", required=True)
  args = parser.parse_args()
  ds = runs_lib.load_meta_dataset(args.data_dir)  # Validates the directory.
  parquet = os.path.join(args.data_dir, runs_lib.RUNS_PARQUET)
  frame = (pd.read_parquet(parquet) if os.path.exists(parquet)
           else pd.read_csv(os.path.join(args.data_dir, runs_lib.RUNS_CSV)))
  if "test_score" not in frame:
    frame["test_score"] = frame["score"]
  choices = [c.name for c in ds.space.choices]
  names = list(ds.task_names)
  score_TxA, test_TxA = _tables(frame, names, choices)
  pct_TxA = pd.DataFrame(score_TxA).rank(axis=1, pct=True).to_numpy()
  f = ds.features_TxF
  rows, boa_pick = [], {}
  for t in range(len(names)):
    train = np.array([u for u in range(len(names)) if u != t])
    std = f[train].std(0)
    z = (f - f[train].mean(0)) / np.where(std > 1e-12, std, 1.0)
    order = train[np.argsort(((z[train] - z[t])**2).sum(1))]
    boa_pick[t] = int(np.argmax(pct_TxA[train].mean(0)))
    row = {"task": names[t], "best_on_average": _regret(test_TxA[t], boa_pick[t]),
           "random_10": metrics.random_k_expected(score_TxA[t], test_TxA[t],
                                                  10)["normalized_regret"],
           "validation_oracle": _regret(test_TxA[t], int(np.argmax(score_TxA[t])))}
    for k in _KS:
      row[f"nearest_{k}"] = _regret(test_TxA[t], int(np.argmax(pct_TxA[order[:k]].mean(0))))
    rows.append(row)
  table = pd.DataFrame(rows).set_index("task")
  seeds = sorted(frame["seed"].unique()) if "seed" in frame else []
  if len(seeds) >= 2:
    # One seed's validation with the same seed's test ("one run"), or with another seed's test
    # ("independent runs"), averaged over seeds and ordered pairs of seeds.
    for a in seeds:
      for b in seeds:
        kind = "one run" if a == b else "independent runs"
        weight = 1 / len(seeds) if a == b else 1 / (len(seeds) * (len(seeds) - 1))
        val_TxA, _ = _tables(frame[frame["seed"] == a], names, choices)
        _, tst_TxA = _tables(frame[frame["seed"] == b], names, choices)
        for t in range(len(names)):
          picks = (
              ("best_on_average", _regret(tst_TxA[t], boa_pick[t])),
              ("random_10", metrics.random_k_expected(val_TxA[t], tst_TxA[t],
                                                      10)["normalized_regret"]),
              ("validation_oracle", _regret(tst_TxA[t], int(np.argmax(val_TxA[t])))))
          for name, value in picks[int(a != b):]:  # best_on_average ignores the validation seed
            column = f"{name} ({kind})"
            if column not in table:
              table[column] = 0.0
            table.loc[names[t], column] += weight * value
  print(f"{args.data_dir}: {len(names)} tasks x {score_TxA.shape[1]} architectures, "
        f"{len(seeds) or 'unknown'} seeds")
  print("mean normalised regret (lower is better):")
  print(table.mean().round(3).to_string())
  print(f"mean Spearman of validation scores between tasks: "
        f"{np.nanmean(_offdiag(np.corrcoef(pct_TxA))):.3f}")


def _offdiag(m: np.ndarray) -> np.ndarray:
  return m[~np.eye(len(m), dtype=bool)]


if __name__ == "__main__":
  main()
