"""Reporting of simulation results: tables, summaries and plots for the experiment binaries.

Rows come from `tarch.evaluate.fold_rows` (one per held-out task x method), with the swept
hyperparameters and the seed as extra columns for sweeps.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from tarch import evaluate


def loto_summary(results: pd.DataFrame) -> dict:
  """`loto_summary.json` content: per-method means over held-out tasks."""
  methods = {}
  for method in evaluate.METHODS:
    sub = results[results["method"] == method]
    if len(sub):
      methods[method] = {
          "mean_normalized_regret": float(sub["normalized_regret"].mean()),
          "mean_percentile": float(sub["percentile"].mean()),
          "num_tasks": len(sub),
      }
  return {"methods": methods}


def sweep_summary(results: pd.DataFrame, swept: list[str]) -> dict:
  """`sweep_summary.json` content: for each swept configuration and method, the mean normalised
  regret over all its simulations, the standard error over held-out tasks of the seed-averaged
  regret (None with one task) and the number of simulations."""
  configs = []
  groups = results.groupby(swept, sort=False) if swept else [((), results)]
  for values, sub in groups:
    values = values if isinstance(values, tuple) else (values,)
    methods = {}
    for method in evaluate.METHODS:
      m = sub[sub["method"] == method]
      if not len(m):
        continue
      per_task = m.groupby("task")["normalized_regret"].mean().to_numpy()
      se = (float(per_task.std(ddof=1) / np.sqrt(len(per_task))) if len(per_task) > 1
            else None)  # undefined with one task: null in strict JSON
      methods[method] = {"mean_normalized_regret": float(m["normalized_regret"].mean()),
                         "se": se, "num_simulations": int(len(m))}
    configs.append({"config": {k: _plain(v) for k, v in zip(swept, values)}, "methods": methods})
  return {"configs": configs}


def _plain(value):
  return value.item() if hasattr(value, "item") else value


def format_table(results: pd.DataFrame) -> str:
  """Methods x metrics (means over tasks, and median trials-to-match), best regret first."""
  table = results.groupby("method", sort=False).agg(
      normalized_regret=("normalized_regret", "mean"),
      percentile=("percentile", "mean"),
      median_trials_to_match=("trials_to_match", "median"),
      tasks=("task", "nunique"))
  return table.sort_values("normalized_regret").to_string(float_format=lambda x: f"{x:.3f}")


def _save(fig, path: str) -> None:
  import matplotlib.pyplot as plt

  fig.tight_layout()
  tmp = f"{path}.tmp{os.getpid()}.png"
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_regret(results: pd.DataFrame, path: str) -> None:
  """Bar chart of mean normalised regret per method, each task's regret as a dot."""
  plt = _pyplot()
  order = (results.groupby("method")["normalized_regret"].mean().sort_values().index.tolist())
  fig, ax = plt.subplots(figsize=(8, 4))
  means = [results.loc[results.method == m, "normalized_regret"].mean() for m in order]
  ax.bar(range(len(order)), means, color=["C1" if m.startswith("tarch") else "C0" for m in order])
  for i, m in enumerate(order):
    y = results.loc[results.method == m, "normalized_regret"].to_numpy()
    ax.scatter(np.full(len(y), i) + np.linspace(-0.2, 0.2, len(y)), y, s=8, color="k", zorder=3)
  ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
  ax.set_ylabel("normalised regret (lower is better)")
  ax.axhline(1.0, color="gray", lw=0.8, ls="--")
  ax.set_title(f"Leave-one-task-out over {results.task.nunique()} tasks")
  _save(fig, path)


def plot_sweep(summary: dict, path: str) -> None:
  """Mean normalised regret (+- standard error) of each method for each swept configuration."""
  plt = _pyplot()
  configs = summary["configs"]
  methods = [m for m in evaluate.METHODS if m != "oracle" and m in configs[0]["methods"]]
  fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(configs) * len(methods) / 4), 4))
  width = 0.8 / len(methods)
  for j, method in enumerate(methods):
    mean = [c["methods"][method]["mean_normalized_regret"] for c in configs]
    se = [c["methods"][method]["se"] or 0.0 for c in configs]
    ax.bar(np.arange(len(configs)) + j * width, mean, width, yerr=se, label=method,
           color=f"C{j}")
  labels = [", ".join(f"{k}={v:g}" for k, v in c["config"].items()) or "default"
            for c in configs]
  ax.set_xticks(np.arange(len(configs)) + 0.4 - width / 2, labels, rotation=20, ha="right")
  ax.set_ylabel("normalised regret (lower is better)")
  ax.legend(fontsize=7, ncol=2)
  ax.set_title("Sweep: mean over held-out tasks and seeds (+- SE over tasks)")
  _save(fig, path)


FEWSHOT_BUDGETS = (1, 3, 5, 10, 20)  # the budgets of `fewshot_summary.json`


def _fewshot_methods(results: pd.DataFrame) -> list[str]:
  """The methods of few-shot rows: `evaluate.FEWSHOT_METHODS` first, then any others
  (refinement variants) in the order they appear."""
  present = list(dict.fromkeys(results["method"]))
  return ([m for m in evaluate.FEWSHOT_METHODS if m in present]
          + [m for m in present if m not in evaluate.FEWSHOT_METHODS])


def fewshot_summary(results: pd.DataFrame) -> dict:
  """`fewshot_summary.json` content: for each method, the mean over held-out tasks (each task's
  seeds averaged first) of the normalised regret after b trainings, for each b of
  `FEWSHOT_BUDGETS` that the search reached; and the number of tasks."""
  methods = {}
  for method in _fewshot_methods(results):
    sub = results[results["method"] == method]
    per_task = sub.groupby(["budget", "task"])["normalized_regret"].mean()
    by_budget = per_task.groupby("budget").mean()
    methods[method] = {
        "regret_at": {str(b): float(by_budget[b]) for b in FEWSHOT_BUDGETS if b in by_budget},
        "num_tasks": int(sub["task"].nunique())}
  return {"methods": methods}


def fewshot_curves(results: pd.DataFrame) -> pd.DataFrame:
  """Methods x budgets: mean normalised regret over tasks (seeds averaged first)."""
  per_task = results.groupby(["method", "budget", "task"])["normalized_regret"].mean()
  table = per_task.groupby(["method", "budget"]).mean().unstack("budget")
  return table.reindex(_fewshot_methods(results))


def fewshot_paired(results: pd.DataFrame, base: str = "tarch") -> pd.DataFrame:
  """Methods x budgets of `FEWSHOT_BUDGETS`: `base` minus each other method's normalised
  regret, paired per task (seeds averaged first), as "mean +- standard error over tasks"
  (negative: `base` is better)."""
  per_task = results.groupby(["method", "budget", "task"])["normalized_regret"].mean()
  if base not in per_task.index.get_level_values("method"):
    raise ValueError(f"no few-shot rows of method {base!r}")
  budgets = [b for b in FEWSHOT_BUDGETS if b in per_task.index.get_level_values("budget")]
  rows = {}
  for method in _fewshot_methods(results):
    if method == base:
      continue
    cells = []
    for b in budgets:
      d = (per_task[base, b] - per_task[method, b]).dropna()
      se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
      cells.append(f"{d.mean():+.3f} +- {se:.3f}")
    rows[method] = cells
  return pd.DataFrame.from_dict(rows, orient="index", columns=budgets)


def plot_fewshot(results: pd.DataFrame, path: str) -> None:
  """Mean normalised regret against the number of trainings, one curve per method."""
  plt = _pyplot()
  curves = fewshot_curves(results)
  fig, ax = plt.subplots(figsize=(7, 4))
  for j, (method, row) in enumerate(curves.iterrows()):
    ax.plot(row.index, row.to_numpy(), marker="o", ms=3, label=method, color=f"C{j % 10}",
            lw=2.2 if method == "tarch" else 1.2,
            ls="-" if method in evaluate.FEWSHOT_METHODS else "--")  # dashed: variants
  ax.set_xlabel("trainings on the held-out task (budget)")
  ax.set_ylabel("normalised regret of the kept architecture")
  ax.set_yscale("symlog", linthresh=0.1)
  ax.legend(fontsize=8)
  ax.set_title(f"Few-shot search over {results.task.nunique()} held-out tasks")
  _save(fig, path)
