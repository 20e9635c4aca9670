"""Paired differences between methods over one or more result tables, and pooled over them.

  python benchmarks/paired.py RESULTS.csv [RESULTS.csv ...] [--base=tarch]
      [--other OTHER.csv [OTHER.csv ...]]

Each file is a `loto_results.csv` (`experiments.loto`), a `fewshot_results.csv`
(`experiments.fewshot`: one column per budget of `tarch.report.FEWSHOT_BUDGETS`) or a
`suite_results.csv` (`benchmarks/suite.py`: its meta-datasets' tasks kept apart). For every file,
and pooled over all of them (the tasks of different files counted apart), it prints `--base`
minus each other method: the mean over tasks of the per-task difference (seeds averaged first)
+- its standard error over tasks, and the number of tasks. This is how BUILD_NOTES.md pools a
setting's effect over several meta-datasets.

`--other` names one more results file per file, the same tasks under another setting (another
commit, say): its methods join the comparison as `METHOD@other`, so the row `tarch@other` is
tarch's change from that setting, per file and pooled.
"""

import argparse

import pandas as pd

from tarch import report


def _as_budgets(results: pd.DataFrame, tag: str) -> pd.DataFrame:
  """`results` with every task named apart by `tag` (and its meta-dataset), and a budget column
  (LOTO and suite rows: budget 1, the zero-shot pick)."""
  task = tag + ":" + (results["meta_dataset"].astype(str) + "/" if "meta_dataset" in results
                      else "") + results["task"].astype(str)
  budget = results["budget"] if "budget" in results else 1
  return results.assign(task=task, budget=budget)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("results", nargs="+", help="loto / fewshot / suite results CSVs")
  parser.add_argument("--base", default="tarch")
  parser.add_argument("--other", nargs="+", default=[],
                      help="one results CSV per RESULTS.csv: the same tasks, another setting")
  args = parser.parse_args()
  if args.other and len(args.other) != len(args.results):
    parser.error(f"--other needs one file per results file ({len(args.results)}), "
                 f"got {len(args.other)}")
  frames = [_as_budgets(pd.read_csv(path), str(i)) for i, path in enumerate(args.results)]
  for i, path in enumerate(args.other):
    other = _as_budgets(pd.read_csv(path), str(i))
    frames[i] = pd.concat([frames[i], other.assign(method=other["method"] + "@other")],
                          ignore_index=True)
  labelled = list(zip(args.results, frames))
  if len(frames) > 1:
    labelled.append((f"pooled over {len(frames)} files", pd.concat(frames, ignore_index=True)))
  for label, frame in labelled:
    print(f"{label}: {args.base} minus each method ({frame['task'].nunique()} tasks)")
    print(report.fewshot_paired(frame, args.base).to_string())


if __name__ == "__main__":
  main()
