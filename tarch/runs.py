"""Meta-datasets: the runs and tasks tables, loaded, validated and written.

A meta-dataset directory holds `space.json` (the search space), `runs.csv` or `runs.parquet` (one
row per trained model: `task`, one column per choice, `score`, optional `test_score` and `cost`)
and `tasks.csv` (`task` plus numeric meta-feature columns). `load_meta_dataset` reads it into a
`MetaDataset` of flat arrays; rows for the same (task, architecture) are seeds and are averaged.

Users bring their own tables, so every check names the file, the row as the user sees it (for a
CSV the 1-based line number, the header being line 1; for parquet the 0-based data row) and the
column. Checks are vectorised; only once a check fails is the first offending row located.

Shape letters: T tasks, F meta-features, A distinct architectures, E encoding width
(`Space.dim`), R results (distinct (task, architecture) pairs after averaging seeds).
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import decimal
import io
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tarch.atomic import atomic_write, atomic_write_json
from tarch.space import Categorical, Integer, Space, SpaceError

SPACE_FILE = "space.json"
RUNS_CSV = "runs.csv"
RUNS_PARQUET = "runs.parquet"
TASKS_FILE = "tasks.csv"

TASK, SCORE, TEST_SCORE, COST = "task", "score", "test_score", "cost"
_RESERVED = (TASK, SCORE, TEST_SCORE, COST)
# How many offending values an error message lists before it abbreviates.
_MAX_LISTED = 10
# tarch computes in float32. Scores and meta-features are differenced there (standardised,
# shifted to a task's best), so they must lie within half of float32's range for every
# difference to stay finite; nonzero meta-features must be float32 normal numbers (XLA flushes
# smaller ones to zero, silently).
FLOAT32_LIMIT = float(np.finfo(np.float32).max) / 2
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
# Integers above this are not exact in float64: integer choices are parsed as integers.
_EXACT_FLOAT_INT = 2**53


class MetaDatasetError(ValueError):
  """A meta-dataset file is missing or malformed; the message names the file, row and column."""


# ------------------------------------------------------------------------------------------------
# The dataset


@dataclasses.dataclass(frozen=True, eq=False)
class MetaDataset:
  """A validated meta-dataset: seed-averaged results plus task meta-features.

  Results are stored sorted by (task, architecture) index. `eq=False` because fields are arrays:
  element-wise `==` would make dataclass equality (and hashing) ill-defined.
  """

  space: Space
  task_names: tuple[str, ...]  # [T], in tasks.csv order
  feature_names: tuple[str, ...]  # [F], tasks.csv columns other than `task`
  features_TxF: np.ndarray  # float64 [T, F] raw meta-features
  arch_keys: tuple[str, ...]  # [A] `space.format(arch)`, in order of first appearance in runs
  enc_AxE: np.ndarray  # float32 [A, E] `space.encode_columns` of each architecture
  task_R: np.ndarray  # int32 [R] task index of each result
  arch_R: np.ndarray  # int32 [R] architecture index of each result
  score_R: np.ndarray  # float64 [R] mean validation score, higher is better
  test_score_R: np.ndarray  # float64 [R] mean test score (= score_R when the column is absent)
  cost_R: np.ndarray  # float64 [R] mean cost, NaN everywhere when there is no cost column
  num_seeds_R: np.ndarray  # int32 [R] number of runs rows averaged into each result
  source: str = ""  # where it was loaded from, for messages

  @property
  def num_tasks(self) -> int:
    return len(self.task_names)

  @property
  def num_archs(self) -> int:
    return len(self.arch_keys)

  @property
  def num_features(self) -> int:
    return len(self.feature_names)

  @property
  def has_cost(self) -> bool:
    return self.cost_R.size > 0 and bool(np.all(np.isfinite(self.cost_R)))

  def task_rows(self, t: int) -> np.ndarray:
    """Row indices (into the `*_R` arrays) of task `t`, sorted by architecture index.

    Args:
      t: task index in [0, num_tasks).

    Returns:
      int64 array of row indices.
    """
    if not 0 <= t < self.num_tasks:
      raise IndexError(f"task index {t} out of range [0, {self.num_tasks})")
    rows = np.flatnonzero(self.task_R == t)
    # Already sorted when built by `from_frames`; sort anyway for hand-built datasets.
    return rows[np.argsort(self.arch_R[rows], kind="stable")]

  def task_indices(self, tasks: Iterable[int | str]) -> list[int]:
    """Indices of `tasks` (names or indices, may be mixed); rejects unknown ones and repeats."""
    tasks = list(tasks)
    index = {name: i for i, name in enumerate(self.task_names)}
    picked = []
    for t in tasks:
      if isinstance(t, str):
        if t not in index:
          raise ValueError(f"unknown task {t!r}; known: {_abbrev(self.task_names)}")
        picked.append(index[t])
      elif isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        if not 0 <= t < self.num_tasks:
          raise ValueError(f"task index {t} out of range [0, {self.num_tasks})")
        picked.append(int(t))
      else:
        raise TypeError(f"tasks must be names or indices, got {t!r}")
    if len(set(picked)) != len(picked):
      raise ValueError(f"tasks selected more than once in {tasks}")
    return picked

  def select_tasks(self, tasks: Iterable[int | str]) -> MetaDataset:
    """Keeps only `tasks`, re-indexed in the order given; all architectures are kept.

    Args:
      tasks: task names or indices (may be mixed), without repeats.

    Returns:
      A new MetaDataset whose task `i` is the `i`-th of `tasks`.
    """
    picked = self.task_indices(tasks)
    rows = [self.task_rows(t) for t in picked]
    rows_R = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    new_task = np.concatenate(
        [np.full(len(r), i, np.int32) for i, r in enumerate(rows)]) if rows else rows_R
    return dataclasses.replace(
        self,
        task_names=tuple(self.task_names[t] for t in picked),
        features_TxF=self.features_TxF[picked].reshape(len(picked), self.num_features),
        task_R=new_task.astype(np.int32),
        arch_R=self.arch_R[rows_R],
        score_R=self.score_R[rows_R],
        test_score_R=self.test_score_R[rows_R],
        cost_R=self.cost_R[rows_R],
        num_seeds_R=self.num_seeds_R[rows_R],
    )


# ------------------------------------------------------------------------------------------------
# Row locations and errors


class _Table:
  """A DataFrame plus how to name its rows in messages (CSV line or parquet row)."""

  def __init__(self, df: pd.DataFrame, source: str, csv_path: str | None = None):
    self.df = df.reset_index(drop=True)
    self.source = source
    self.is_csv = not source.endswith(".parquet")
    # The file on disk, so exact line numbers (blank lines, quoted newlines) can be recovered.
    self._csv_path = csv_path
    self._lines: list[int] | None = None

  def _line(self, pos: int) -> int:
    """1-based line of data row `pos` (-1 for the header)."""
    if self._csv_path is None:
      return pos + 2
    if self._lines is None:
      try:
        self._lines = _csv_record_lines(self._csv_path)
      except (OSError, csv.Error):  # Only a message is at stake: fall back to counting rows.
        self._lines = []
    if 0 <= pos + 1 < len(self._lines):
      return self._lines[pos + 1]
    return pos + 2

  def where(self, pos: int) -> str:
    """How a user finds row `pos` in the file (-1: the header)."""
    if not self.is_csv:
      return "header" if pos < 0 else f"row {pos}"
    line = self._line(pos)
    return f"line {line} (header)" if pos < 0 else f"line {line}"

  def error(self, pos: int, column: str | None, problem: str) -> MetaDatasetError:
    col = f", column {column!r}" if column is not None else ""
    return MetaDatasetError(f"{self.source}, {self.where(pos)}{col}: {problem}")

  def check(self, bad: np.ndarray, column: str, problem: Callable[[int], str]) -> None:
    """Raises naming the first row where `bad` holds; `problem(pos)` describes it."""
    if not bad.any():
      return
    pos = int(np.argmax(bad))
    more = int(bad.sum()) - 1
    suffix = f" ({more} more such row{'s' if more > 1 else ''})" if more else ""
    raise self.error(pos, column, problem(pos) + suffix)


def _csv_record_lines(path: str) -> list[int]:
  """Starting line of each record pandas reads from `path` (header first), for messages only."""
  lines, last = [], 0
  with open(path, newline="", encoding="utf-8", errors="replace") as f:
    reader = csv.reader(f)
    for record in reader:
      start, last = last + 1, reader.line_num
      if not _blank(record):
        lines.append(start)
  return lines


def _blank(record: list[str]) -> bool:
  """Whether pandas skips this csv record: an empty line or one of spaces and tabs only (a
  form feed or a quoted empty field `""` is a row)."""
  return not record or (len(record) == 1 and record[0] != "" and not record[0].strip(" \t"))


def _abbrev(items: Sequence[Any]) -> str:
  """Lists up to _MAX_LISTED items, noting how many were left off."""
  items = list(items)
  if len(items) <= _MAX_LISTED:
    return repr(items)
  return f"{items[:_MAX_LISTED]!r} and {len(items) - _MAX_LISTED} more"


def _cell(table: _Table, column: str, pos: int) -> str:
  """The value at (pos, column) as the user wrote it, for messages."""
  value = table.df[column].iloc[pos]
  if isinstance(value, np.generic):
    value = value.item()  # 7, not np.int64(7)
  return repr(value)


def _strings(table: _Table, column: str) -> np.ndarray:
  """Column as an object array of str, erroring on missing cells."""
  col = table.df[column]
  missing = col.isna().to_numpy()
  table.check(missing, column, lambda pos: "missing value")
  return col.astype(str).to_numpy(dtype=object)


def _numbers(table: _Table, column: str, what: str) -> np.ndarray:
  """Column as float64, erroring on cells that are not numbers (NaN/inf are left to callers)."""
  _reject_booleans(table, column, f"{what} must be a number")
  col = table.df[column]
  x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
  if col.dtype.kind in "fiu":
    return x
  # Text that parses as NaN ("nan", "NaN") is a NaN, not garbage: callers report NaN precisely.
  text = col.astype(str).str.strip().str.lower()
  nan_text = text.isin(["nan", "-nan", "+nan"]).to_numpy()
  table.check(np.isnan(x) & ~nan_text, column,
              lambda pos: f"{what} must be a number, got {_cell(table, column, pos)}")
  return x


def _check_float32(table: _Table, column: str, x: np.ndarray, what: str) -> None:
  table.check(np.abs(x) > FLOAT32_LIMIT, column, lambda pos: (
      f"{what} {_cell(table, column, pos)} is outside +-{FLOAT32_LIMIT:.4g}: tarch computes in "
      "float32, where differences of such values overflow; rescale the column"))


def _integers(table: _Table, c: Integer) -> np.ndarray:
  """An integer choice's column as exact int64 values, within [c.low, c.high].

  Integers are read as integers, not through float64: its rounding above 2**53 would merge
  neighbouring values into one architecture, and below it would take `3.0000000000000001` for
  3. Text (CSV cells) is parsed exactly: `3`, `3.0` and `3e0` are 3, anything with a nonzero
  fraction is an error. A float column (parquet, a DataFrame) holds exact values below 2**53.
  """
  col = table.df[c.name]
  _reject_booleans(table, c.name, "expected integers")

  def outside(pos):
    return f"value {_cell(table, c.name, pos)} outside [{c.low}, {c.high}]"

  if col.dtype.kind in "iu":
    value = col.to_numpy().astype(np.int64)
  elif col.dtype.kind == "f":
    x = col.to_numpy(dtype=np.float64, na_value=np.nan)
    table.check(np.isnan(x), c.name, lambda pos: "missing value")
    table.check(~np.isfinite(x), c.name, outside)
    table.check(x != np.round(x), c.name,
                lambda pos: f"expected an integer, got {_cell(table, c.name, pos)}")
    table.check(np.abs(x) >= _EXACT_FLOAT_INT, c.name, lambda pos: (
        f"integer {_cell(table, c.name, pos)} is stored as a float, which is not exact beyond "
        "2**53; store the column as integers"))
    value = x.astype(np.int64)
  else:
    table.check(col.isna().to_numpy(), c.name, lambda pos: "missing value")
    text = col.astype(str).str.strip()
    plain = text.str.fullmatch(r"[+-]?\d{1,18}").to_numpy(dtype=bool)  # fits int64 as is
    value = np.zeros(len(col), np.int64)
    value[plain] = text[plain].astype(np.int64).to_numpy()
    for pos in np.flatnonzero(~plain):
      v = _exact_integer(table, int(pos), c.name)
      if v is None or not c.low <= v <= c.high:
        raise table.error(int(pos), c.name, outside(int(pos)))
      value[pos] = v
  table.check((value < c.low) | (value > c.high), c.name, outside)
  return value


def _exact_integer(table: _Table, pos: int, column: str) -> int | None:
  """The integer written at row `pos` of `column`, parsed from its text exactly; None for an
  infinite or NaN one."""
  raw = str(table.df[column].iloc[pos]).strip()
  try:
    number = decimal.Decimal(raw)
    if not number.is_finite():
      return None
    exact = decimal.Context(prec=max(28, len(raw) + 2),
                            traps=[decimal.Inexact, decimal.InvalidOperation])
    return int(number.to_integral_exact(context=exact))
  except (decimal.InvalidOperation, decimal.Inexact, ValueError):
    raise table.error(pos, column, f"expected an integer, got {_cell(table, column, pos)}"
                      ) from None


def _reject_booleans(table: _Table, column: str, want: str) -> None:
  """MetaDatasetError for True/False cells, which numeric conversion would take for 1/0 (a
  CSV column of only `true` and `false` reads as booleans)."""
  col = table.df[column]
  if col.dtype.kind == "b":
    raise table.error(0, column, f"{want}, got {_cell(table, column, 0)} (a column of "
                      "True/False)")
  if col.dtype == object:
    table.check(col.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool), column,
                lambda pos: f"{want}, got {_cell(table, column, pos)}")


# ------------------------------------------------------------------------------------------------
# Validation and assembly


def from_frames(space: Space, runs_df: pd.DataFrame, tasks_df: pd.DataFrame,
                runs_source: str = RUNS_CSV, tasks_source: str = TASKS_FILE) -> MetaDataset:
  """Validates a runs table and a tasks table against `space` and builds a MetaDataset.

  This is the core behind `load_meta_dataset`; adapters and tests call it with in-memory frames.
  Rows are numbered in messages as they would be in `runs_source` / `tasks_source`: a CSV line
  (header = line 1) unless the source ends in `.parquet`, then the 0-based data row.

  Args:
    space: the search space the architectures come from.
    runs_df: one row per trained model (see the module docstring); extra columns are ignored.
    tasks_df: `task` plus numeric meta-feature columns.
    runs_source: name of the runs file, for messages.
    tasks_source: name of the tasks file, for messages.

  Returns:
    The validated, seed-averaged MetaDataset.

  Raises:
    MetaDatasetError: naming the file, row and column of the first problem found.
  """
  where = f"space {space.name!r}"
  try:  # a Space built in code is held to the rules of space.json, so that it writes and loads
    Space.from_dict(space.to_dict(), source=where)
  except SpaceError as e:
    raise MetaDatasetError(str(e)) from None
  _check_choice_names(space, where)
  return _build(space, _Table(runs_df, runs_source), _Table(tasks_df, tasks_source))


def _build(space: Space, runs: _Table, tasks: _Table, source: str = "") -> MetaDataset:
  """Validates both tables (the space is already checked) and assembles the dataset."""
  task_names, feature_names, features_TxF = _read_tasks(tasks)
  task_idx, choice_cols, score, test_score, cost = _read_runs(space, runs)
  task_idx = _match_tasks(runs, tasks, task_idx, task_names)
  arch_idx, arch_keys, enc_AxE = _architectures(space, choice_cols)

  # Seeds: one result per distinct (task, architecture); np.unique sorts by task, then arch.
  num_archs = len(arch_keys)
  pair = task_idx.astype(np.int64) * num_archs + arch_idx
  pairs, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)

  def mean(x):
    return np.bincount(inverse, weights=x, minlength=len(pairs)) / counts

  return MetaDataset(
      space=space,
      task_names=task_names,
      feature_names=feature_names,
      features_TxF=features_TxF,
      arch_keys=arch_keys,
      enc_AxE=enc_AxE,
      task_R=(pairs // num_archs).astype(np.int32),
      arch_R=(pairs % num_archs).astype(np.int32),
      score_R=mean(score),
      test_score_R=mean(test_score),
      cost_R=mean(cost) if cost is not None else np.full(len(pairs), np.nan),
      num_seeds_R=counts.astype(np.int32),
      source=source,
  )


def _check_choice_names(space: Space, where: str) -> None:
  """MetaDatasetError, blaming the space, for a choice named like a reserved runs column."""
  for name in space.names:
    for reserved in _RESERVED:
      if name == reserved or _near(name, reserved):
        raise MetaDatasetError(
            f"{where}: choice {name!r} is named like the reserved runs column {reserved!r} "
            f"(reserved: {', '.join(_RESERVED)}); rename the choice in {SPACE_FILE} and in the "
            "runs table")


def _read_tasks(tasks: _Table) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
  """Checks tasks.csv; returns task names, feature names and features_TxF."""
  df = tasks.df
  if TASK not in df.columns:
    raise tasks.error(-1, TASK, f"missing column; found {list(map(str, df.columns))}")
  feature_names = tuple(str(c) for c in df.columns if c != TASK)
  if not feature_names:
    raise tasks.error(-1, None, "no meta-feature columns: expected `task` plus at least one "
                      "numeric column")
  if len(df) == 0:
    raise MetaDatasetError(f"{tasks.source}: no tasks (the file has a header but no rows)")
  names = _strings(tasks, TASK)
  tasks.check(np.array([not n.strip() for n in names]), TASK, lambda pos: "empty task name")
  dup = pd.Series(names).duplicated().to_numpy()
  if dup.any():
    pos = int(np.argmax(dup))
    first = int(np.argmax(names == names[pos]))
    raise tasks.error(pos, TASK, f"duplicate task {names[pos]!r} (first at {tasks.where(first)})")
  columns = []
  for name in feature_names:
    x = _numbers(tasks, name, "meta-feature")
    tasks.check(~np.isfinite(x), name, lambda pos, name=name:
                f"meta-feature must be finite, got {_cell(tasks, name, pos)}")
    _check_float32(tasks, name, x, "meta-feature")
    tasks.check((x != 0) & (np.abs(x) < FLOAT32_TINY), name, lambda pos, name=name: (
        f"meta-feature {_cell(tasks, name, pos)} is nonzero but below float32's smallest "
        f"normal number ({FLOAT32_TINY:.4g}), which tarch's float32 arithmetic flushes to zero; "
        "rescale the column"))
    columns.append(x)
  return tuple(names), feature_names, np.stack(columns, axis=1)


def _read_runs(space: Space, runs: _Table
               ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray, np.ndarray | None]:
  """Checks the runs table; returns task names, per-choice columns, score, test_score, cost."""
  df = runs.df
  required = [TASK, *space.names, SCORE]
  missing = [c for c in required if c not in df.columns]
  if missing:
    raise runs.error(-1, missing[0], f"missing required column(s) {missing}")
  if len(df) == 0:
    raise MetaDatasetError(f"{runs.source}: no runs (the file has a header but no rows)")
  task = _strings(runs, TASK)
  runs.check(np.asarray(pd.Series(task).str.strip() == "", dtype=bool), TASK,
             lambda pos: "empty task name")

  # Categorical columns become value indices; numeric ones float64 values.
  choice_cols = []
  for c in space.choices:
    col = df[c.name]
    if isinstance(c, Categorical):
      runs.check(col.isna().to_numpy(), c.name,
                 lambda pos, c=c: f"missing value; valid: {list(c.values)}")
      codes = pd.Index(c.values).get_indexer(col.astype(str))
      runs.check(codes < 0, c.name, lambda pos, c=c, col=col:
                 f"unknown value {str(col.iloc[pos])!r}; valid: {list(c.values)}")
      choice_cols.append(codes)
    elif isinstance(c, Integer):
      choice_cols.append(_integers(runs, c))
    else:
      x = _numbers(runs, c.name, "value")
      runs.check(~np.isfinite(x) | (x < c.low) | (x > c.high), c.name, lambda pos, c=c:
                 f"value {_cell(runs, c.name, pos)} outside [{c.low}, {c.high}]")
      choice_cols.append(x + 0.0)  # -0.0 and 0.0 are one value

  def finite(column, what):
    x = _numbers(runs, column, what)
    runs.check(~np.isfinite(x), column,
               lambda pos: f"{what} must be finite, got {_cell(runs, column, pos)}")
    _check_float32(runs, column, x, what)
    return x

  score = finite(SCORE, "score")
  test_score = finite(TEST_SCORE, "test score") if TEST_SCORE in df.columns else score
  cost = None
  if COST in df.columns:
    cost = finite(COST, "cost")
    runs.check(cost < 0, COST, lambda pos: f"cost must be >= 0, got {_cell(runs, COST, pos)}")
  return task, choice_cols, score, test_score, cost


def _match_tasks(runs: _Table, tasks: _Table, task: np.ndarray,
                 task_names: tuple[str, ...]) -> np.ndarray:
  """Maps runs' task names to tasks.csv indices; every task must appear in both files."""
  idx = pd.Index(task_names).get_indexer(task)
  unknown = idx < 0
  if unknown.any():
    names = pd.unique(task[unknown])
    pos = int(np.argmax(unknown))
    raise runs.error(pos, TASK, f"task {task[pos]!r} is not in {tasks.source} "
                     f"({len(names)} unknown: {_abbrev(names)})")
  seen = np.bincount(idx, minlength=len(task_names)) > 0
  if not seen.all():
    names = [n for n, s in zip(task_names, seen) if not s]
    pos = int(np.argmin(seen))
    raise tasks.error(pos, TASK, f"task {task_names[pos]!r} has no rows in {runs.source} "
                      f"({len(names)} without runs: {_abbrev(names)})")
  return idx.astype(np.int32)


def _architectures(space: Space, choice_cols: list[np.ndarray]
                   ) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
  """Numbers the distinct architectures in order of first appearance; returns arch_idx, keys, enc.

  Identity is exact: two rows are one architecture only if every choice has the same value
  (floats bit for bit, integers exactly, categorical values as spelled), and `space.format`
  spells distinct architectures distinctly.
  """
  # Combine columns pairwise and re-factorise each time, so the combined code stays < R and never
  # overflows however many choices there are; factorize keeps first-appearance order.
  code = np.zeros(len(choice_cols[0]), np.int64)
  for col in choice_cols:
    col_code, col_uniques = pd.factorize(col)
    code, _ = pd.factorize(code * len(col_uniques) + col_code)
  _, first = np.unique(code, return_index=True)  # first row of each architecture

  values = {}
  for c, col in zip(space.choices, choice_cols):
    rep = col[first]
    if isinstance(c, Categorical):
      values[c.name] = [c.values[i] for i in rep]
    elif isinstance(c, Integer):
      values[c.name] = [int(v) for v in rep]
    else:
      values[c.name] = [float(v) for v in rep]
  keys = tuple(space.format_columns(values))
  try:
    enc_AxE = space.encode_columns(values)
  except SpaceError as e:  # Unreachable after the checks above; kept as a clear message.
    raise MetaDatasetError(f"cannot encode architectures: {e}") from e
  return code.astype(np.int32), keys, enc_AxE


# ------------------------------------------------------------------------------------------------
# Files


def load_meta_dataset(path: str | os.PathLike) -> MetaDataset:
  """Reads and validates a meta-dataset directory.

  Args:
    path: directory holding `space.json`, `runs.csv` or `runs.parquet`, and `tasks.csv`.

  Returns:
    The validated, seed-averaged MetaDataset.

  Raises:
    MetaDatasetError: a file is missing or malformed; the message names file, row and column.
  """
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise MetaDatasetError(f"{path}: not a directory (expected a meta-dataset directory)")
  has = {name: os.path.isfile(os.path.join(path, name))
         for name in (SPACE_FILE, RUNS_CSV, RUNS_PARQUET, TASKS_FILE)}
  missing = [n for n in (SPACE_FILE, TASKS_FILE) if not has[n]]
  if not has[RUNS_CSV] and not has[RUNS_PARQUET]:
    missing.append(f"{RUNS_CSV} or {RUNS_PARQUET}")
  if missing:
    raise MetaDatasetError(f"{path}: missing {', '.join(missing)}")
  if has[RUNS_CSV] and has[RUNS_PARQUET]:
    raise MetaDatasetError(
        f"{path}: both {RUNS_CSV} and {RUNS_PARQUET} exist; keep exactly one runs file")

  space_path = os.path.join(path, SPACE_FILE)
  try:
    space = Space.from_json(space_path)
  except (SpaceError, OSError, UnicodeDecodeError) as e:
    msg = str(e)
    raise MetaDatasetError(msg if space_path in msg else f"{space_path}: {msg}") from e
  _check_choice_names(space, space_path)

  tasks_path = os.path.join(path, TASKS_FILE)
  tasks = _Table(_read_csv(tasks_path, [TASK], expected=[TASK], named=True), tasks_path,
                 csv_path=tasks_path)
  if has[RUNS_CSV]:
    runs_path = os.path.join(path, RUNS_CSV)
    runs_df = _read_csv(runs_path, _csv_text_columns(space), keep=_runs_columns(space),
                        expected=_runs_columns(space))
    runs = _Table(runs_df, runs_path, csv_path=runs_path)
  else:
    runs_path = os.path.join(path, RUNS_PARQUET)
    runs = _Table(_read_parquet(runs_path, space, _runs_columns(space)), runs_path)
  return _build(space, runs, tasks, source=path)


def load_runs_frame(path: str | os.PathLike, extra_columns: Sequence[str] = ()
                    ) -> tuple[Space, pd.DataFrame]:
  """The search space and the raw runs table of a meta-dataset directory, read as
  `load_meta_dataset` reads them (CSV cells of categorical choices and task names as text, no NA
  spellings) but not validated or averaged: one row per run, with `extra_columns` (e.g. a `seed`
  column) kept where present. Call `load_meta_dataset` first to validate the directory."""
  path = os.fspath(path)
  space = Space.from_json(os.path.join(path, SPACE_FILE))
  keep = [*_runs_columns(space), *extra_columns]
  csv_path = os.path.join(path, RUNS_CSV)
  if os.path.isfile(csv_path):
    return space, _read_csv(csv_path, _csv_text_columns(space), keep=keep)
  return space, _read_parquet(os.path.join(path, RUNS_PARQUET), space, keep)


def _string_columns(space: Space) -> list[str]:
  """Columns whose values are text: task names and categorical values."""
  return [TASK] + [c.name for c in space.choices if isinstance(c, Categorical)]


def _csv_text_columns(space: Space) -> list[str]:
  """Columns a CSV is read as text: the text ones, and integer choices, which are parsed
  exactly (`_integers`) rather than through pandas' float64 for a column with `3.0` in it."""
  return _string_columns(space) + [c.name for c in space.choices if isinstance(c, Integer)]


def _runs_columns(space: Space) -> list[str]:
  return [TASK, *space.names, SCORE, TEST_SCORE, COST]


def _read_csv(path: str, str_columns: Sequence[str], keep: Sequence[str] | None = None,
              expected: Sequence[str] = (), named: bool = False):
  """Reads a CSV with `str_columns` as text, keeping only `keep` columns (if given).

  Strict: the file must be UTF-8 (a byte-order mark is allowed), the header may not repeat a
  column nor nearly spell one of `expected` (the reserved names and choices; `_check_header`),
  and every data line must have exactly as many fields as the header (`_check_widths`): a line
  with one more (an unquoted decimal comma, a stray trailing field) or one fewer would otherwise
  shift or drop values silently. With `named`, every column must have a name (in tasks.csv an
  unnamed column, such as the index pandas' `to_csv` writes, would become a meta-feature).
  """
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise MetaDatasetError(f"{path}: cannot read: {e}") from e
  if raw.startswith(codecs.BOM_UTF8):
    raw = raw[len(codecs.BOM_UTF8):]
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    # Lines end in \n, \r\n or \r, as pandas reads them.
    line = (raw.count(b"\n", 0, e.start) + raw.count(b"\r", 0, e.start)
            - raw.count(b"\r\n", 0, e.start) + 1)
    raise MetaDatasetError(
        f"{path}, line {line}: byte {raw[e.start]:#04x} is not UTF-8 (save the file as "
        "UTF-8)") from None
  header = next(csv.reader(io.StringIO(text, newline="")), None)
  if not header or not "".join(header).strip():
    raise MetaDatasetError(f"{path}: empty file (expected a header line)")
  _check_header(f"{path}, line 1", header, expected)
  unnamed = [i for i, name in enumerate(header, 1) if not name.strip()]
  if named and unnamed:
    raise MetaDatasetError(
        f"{path}, line 1: column {unnamed[0]} has no name (an index written by pandas' to_csv? "
        "write with index=False, or name the column)")
  _check_widths(path, raw, text, len(header))
  try:
    # No NA spellings at all: "None" or "NA" may be real categorical values or task names,
    # and numeric columns are coerced (with a precise message) later anyway.
    df = pd.read_csv(io.BytesIO(raw), index_col=False, keep_default_na=False,
                     dtype={c: str for c in str_columns if c in header})
  except ValueError as e:  # pandas' ParserError is a ValueError
    raise MetaDatasetError(f"{path}: cannot parse CSV: {e}") from e
  return df if keep is None else df[[c for c in df.columns if c in keep]]


def _check_widths(path: str, raw: bytes, text: str, width: int) -> None:
  """MetaDatasetError naming the first line whose field count is not `width`.

  Lines holding only whitespace are skipped, as pandas skips them. Without quotes a line's
  fields are its commas plus one, counted vectorised over the bytes; a file with quotes (fields
  may hold commas and line breaks) or bare carriage returns is walked with the csv module.
  """
  if b'"' not in raw and (b"\r" not in raw or raw.count(b"\r") == raw.count(b"\r\n")):
    data = np.frombuffer(raw if raw.endswith(b"\n") else raw + b"\n", np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    # Commas before each line's end, differenced: the commas of each line.
    fields = np.diff(np.searchsorted(np.flatnonzero(data == ord(",")), ends), prepend=0) + 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    for i in np.flatnonzero(fields != width):
      if raw[starts[i]:ends[i]].strip(b" \t\r"):  # pandas skips lines of spaces and tabs
        _width_error(path, int(i) + 1, int(fields[i]), width)
    return
  lines = io.StringIO(text, newline="").readlines()  # split as the csv reader splits them
  reader = csv.reader(lines)
  start = last = 0
  for record in reader:
    start, last = last + 1, reader.line_num
    if len(record) != width and not _blank(record):
      _width_error(path, start, len(record), width, end=last,
                   unclosed=_unclosed_quote(lines[start - 1:]))
  if start and _unclosed_quote(lines[start - 1:]):  # the last record, of the right width
    raise MetaDatasetError(
        f"{path}, line {start}: a quoted field opened on this line is never closed")


def _unclosed_quote(lines: list[str]) -> bool:
  """Whether the first CSV record of `lines` opens a quoted field that is never closed."""
  try:
    next(csv.reader(lines, strict=True), None)
  except csv.Error as e:
    return "unexpected end of data" in str(e)
  return False


def _width_error(path: str, line: int, fields: int, width: int, end: int | None = None,
                 unclosed: bool = False):
  if unclosed:
    hint = "a quoted field opened on this line is never closed"
  elif end is not None and end > line:
    hint = (f"the record runs on to line {end} inside a quoted field: a missing or stray "
            "quote?")
  elif fields > width:
    hint = "an unquoted comma in a value, e.g. a decimal comma, or a stray trailing field?"
  else:
    hint = "a missing value or a header with a stray trailing comma?"
  raise MetaDatasetError(
      f"{path}, line {line}: {fields} field{'s' if fields != 1 else ''}, but the header has "
      f"{width} ({hint})")


def _near(name: str, want: str) -> bool:
  """Whether column `name` nearly spells `want`: equal once case, spaces, `-` and `_` are
  ignored, or but for a plural `s` (`Test_Score`, `test score`, `cost `, `costs`)."""
  a, b = (re.sub(r"[\s_\-]", "", x.lower()) for x in (name, want))
  return a == b or a == b + "s" or b == a + "s"


def _check_header(where: str, names: Sequence[str], expected: Sequence[str]) -> None:
  """MetaDatasetError for a repeated column, or one that nearly spells an expected name
  (`_near`): it would be ignored or read as something else, silently."""
  seen = {}
  for i, name in enumerate(names, 1):
    if name in seen and name.strip():  # unnamed columns (pandas' index) are ignored anyway
      raise MetaDatasetError(
          f"{where}: column {name!r} appears twice (columns {seen[name]} and {i}); keep one")
    seen[name] = i
  for name in names:
    if name in expected or not name.strip():
      continue
    for want in expected:
      if _near(name, want):
        raise MetaDatasetError(
            f"{where}: column {name!r} nearly spells {want!r}; rename it to {want!r} (or to "
            "something clearly different)")


def _read_parquet(path: str, space: Space, keep: Sequence[str]) -> pd.DataFrame:
  """Reads the `keep` columns present in a parquet file, whose column names are checked as a
  CSV header is (`_check_header`) and whose column types must fit what they hold
  (`_check_parquet_types`)."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  try:
    schema = pq.read_schema(path)
  except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError.
    raise MetaDatasetError(f"{path}: cannot read parquet: {e}") from e
  _check_header(f"{path}, header", schema.names, keep)
  _check_parquet_types(path, space, schema)
  try:
    # Without pandas' metadata, so that a column stored as the index (`set_index("task")`)
    # stays a column.
    return pq.read_table(path, columns=[c for c in schema.names if c in keep]).to_pandas(
        ignore_metadata=True)
  except (OSError, ValueError) as e:
    raise MetaDatasetError(f"{path}: cannot read parquet: {e}") from e


def _check_parquet_types(path: str, space: Space, schema) -> None:
  """MetaDatasetError for a column whose parquet type cannot hold what it must: a bool or
  timestamp score would otherwise load as 0/1 or nanoseconds, silently."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top

  def text(t):
    if pa.types.is_dictionary(t):
      t = t.value_type
    return (pa.types.is_string(t) or pa.types.is_large_string(t)
            or getattr(pa.types, "is_string_view", lambda _: False)(t))

  def number(t):
    return pa.types.is_integer(t) or pa.types.is_floating(t)

  allowed = {TASK: (text, pa.types.is_integer, "text or integers"),
             SCORE: (number, None, "numbers (int or float)"),
             TEST_SCORE: (number, None, "numbers (int or float)"),
             COST: (number, None, "numbers (int or float)")}
  for c in space.choices:
    if isinstance(c, Categorical):
      allowed[c.name] = (text, pa.types.is_integer, "text (or integers) spelling its values")
    else:
      allowed[c.name] = (number, None, "numbers (int or float)")
  for field in schema:
    if field.name not in allowed or pa.types.is_null(field.type):
      continue  # an all-null column is reported cell by cell as missing values
    ok, also, want = allowed[field.name]
    if not (ok(field.type) or (also is not None and also(field.type))):
      raise MetaDatasetError(
          f"{path}, header, column {field.name!r}: parquet type {field.type}; expected {want}")


def write_meta_dataset(path: str | os.PathLike, space: Space, runs_df: pd.DataFrame,
                       tasks_df: pd.DataFrame, runs_format: str = "parquet") -> None:
  """Validates, then writes a meta-dataset directory; each file is replaced atomically.

  Args:
    path: directory to write (created if needed).
    space: the search space, written as `space.json`.
    runs_df: the runs table (see the module docstring).
    tasks_df: the tasks table.
    runs_format: "parquet" (runs.parquet) or "csv" (runs.csv); a runs file of the other format
      left from before is removed, since a directory may hold only one.

  Raises:
    MetaDatasetError: the tables are invalid (nothing is written).
    ValueError: unknown `runs_format`.
  """
  runs_names = {"parquet": RUNS_PARQUET, "csv": RUNS_CSV}
  if runs_format not in runs_names:
    raise ValueError(f"runs_format must be one of {sorted(runs_names)}, got {runs_format!r}")
  runs_name = runs_names[runs_format]
  from_frames(space, runs_df, tasks_df, runs_source=runs_name, tasks_source=TASKS_FILE)

  path = os.fspath(path)
  os.makedirs(path, exist_ok=True)
  # Text columns are written as strings so a parquet file reads back with the same spellings;
  # numeric ones as the numbers they were validated as, so parquet types fit (integers exact).
  table = _Table(runs_df, runs_name)
  numeric = {c.name: (_integers(table, c) if isinstance(c, Integer)
                      else _numbers(table, c.name, "value"))
             for c in space.choices if not isinstance(c, Categorical)}
  numeric.update({name: _numbers(table, name, name) for name in (SCORE, TEST_SCORE, COST)
                  if name in runs_df.columns})
  runs_df = runs_df.astype({c: str for c in _string_columns(space)}).assign(**numeric)
  tasks_df = tasks_df.astype({TASK: str})

  def write_runs(tmp):
    if runs_format == "parquet":
      runs_df.to_parquet(tmp, index=False)
    else:
      runs_df.to_csv(tmp, index=False)

  atomic_write_json(os.path.join(path, SPACE_FILE), space.to_dict())
  atomic_write(os.path.join(path, TASKS_FILE), lambda tmp: tasks_df.to_csv(tmp, index=False))
  atomic_write(os.path.join(path, runs_name), write_runs)
  stale = os.path.join(path, RUNS_CSV if runs_format == "parquet" else RUNS_PARQUET)
  if os.path.exists(stale):
    os.remove(stale)

