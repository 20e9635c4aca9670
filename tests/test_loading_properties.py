"""Property-based tests of loading: a valid meta-dataset loads to exactly what was written, and a
corrupted one raises `MetaDatasetError` naming the file, the line (or parquet row) and column.

Meta-datasets are generated whole: a search space of categorical, integer and float choices
(log scales included), task names in any script (with separators, quotes and spaces), seeds,
optional test scores and costs, and meta-features. The expected content is computed here, from
the generated Python values, independently of the loader.
"""

import csv
import os
import tempfile

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest

from tarch import runs
from tarch.runs import MetaDatasetError
from tarch.space import Categorical, Float, Integer, Space

# A warning (a division by zero in an encoding, say) is a wrongly computed value.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

# Derandomised, so that CI is reproducible; TARCH_LOADING_EXAMPLES=2000 explores further.
_SETTINGS = hypothesis.settings(
    max_examples=int(os.environ.get("TARCH_LOADING_EXAMPLES", "150")), deadline=None,
    derandomize="TARCH_LOADING_EXAMPLES" not in os.environ,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
_RESERVED = ("task", "score", "test_score", "cost")

# Text the way users write it: any script, separators and quotes, but no line breaks (so that a
# data row is one line and its number is known), no NUL and no surrogates.
_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
_task_name = _text.filter(lambda s: s.strip() != "")
_choice_name = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True).filter(
    lambda n: not any(runs._near(n, r) for r in _RESERVED))  # pylint: disable=protected-access


def _normal(name):
  """Names equal under this are near misses of each other (`tarch.runs._near`): a generated
  table keeps them apart, so that each corruption has one expected message."""
  return name.rstrip("s")


# Finite numbers that float32 arithmetic can hold, at every magnitude.
_number = st.one_of(st.floats(-1e30, 1e30, allow_subnormal=False), st.integers(-1000, 1000))
_feature = st.one_of(st.just(0.0), st.floats(1.2e-38, 1e30).flatmap(
    lambda x: st.sampled_from([x, -x])))


@st.composite
def _choice(draw, name):
  kind = draw(st.sampled_from(["categorical", "int", "float"]))
  if kind == "categorical":
    values = draw(st.lists(_text, min_size=1, max_size=4, unique=True))
    return Categorical(name, tuple(values))
  log = draw(st.booleans())
  if kind == "int":
    low = draw(st.integers(1, 2**62) if log else st.integers(-2**62, 2**62))
    high = draw(st.integers(low + 1, min(low + draw(st.sampled_from([3, 2**40])), 2**63 - 1)))
    return Integer(name, low, high, log)
  low = draw(st.floats(1e-30, 1e30) if log else st.floats(-1e30, 1e30))
  high = draw(st.floats(low, 1e31).filter(lambda h: np.float32(h) > np.float32(low)))
  return Float(name, low, high, log)


def _value(draw, c):
  if isinstance(c, Categorical):
    return draw(st.sampled_from(c.values))
  if isinstance(c, Integer):
    return draw(st.integers(c.low, c.high))
  return draw(st.floats(c.low, c.high))


@st.composite
def meta_datasets(draw):
  """(space, runs_df, tasks_df): a valid meta-dataset, as a user's own tables."""
  names = draw(st.lists(_choice_name, min_size=1, max_size=3, unique_by=_normal))
  space = Space("generated", tuple(draw(_choice(n)) for n in names))
  tasks = draw(st.lists(_task_name, min_size=1, max_size=3, unique=True))
  archs = [{c.name: _value(draw, c) for c in space.choices}
           for _ in range(draw(st.integers(1, 4)))]
  with_test, with_cost = draw(st.booleans()), draw(st.booleans())
  rows = []
  for task in tasks:
    picked = draw(st.lists(st.sampled_from(range(len(archs))), min_size=1, max_size=5))
    for a in picked:  # a repeated architecture is a second seed
      row = {"task": task, **archs[a], "score": draw(_number)}
      if with_test:
        row["test_score"] = draw(_number)
      if with_cost:
        row["cost"] = abs(draw(_number))
      rows.append(row)
  draw(st.randoms()).shuffle(rows)
  columns = ["task", *space.names, "score"] + ["test_score"] * with_test + ["cost"] * with_cost
  runs_df = pd.DataFrame(rows, columns=columns)
  features = draw(st.lists(_choice_name, min_size=1, max_size=3, unique_by=_normal))
  tasks_df = pd.DataFrame({"task": tasks, **{
      f: [draw(_feature) for _ in tasks] for f in features}})
  return space, runs_df, tasks_df


def _expected(space, runs_df):
  """{(task, architecture key): (mean score, mean test score, mean cost, seeds)}, from the
  generated Python values."""
  groups = {}
  for row in runs_df.to_dict("records"):
    key = space.format({n: row[n] for n in space.names})
    groups.setdefault((row["task"], key), []).append(row)
  out = {}
  for k, rows in groups.items():
    score = [r["score"] for r in rows]
    test = [r.get("test_score", r["score"]) for r in rows]
    cost = [r.get("cost", np.nan) for r in rows]
    out[k] = (np.mean(score), np.mean(test), np.mean(cost), len(rows))
  return out


def _assert_loads_as_written(m, space, runs_df, tasks_df):
  assert m.space == space
  assert m.task_names == tuple(tasks_df["task"])
  assert m.feature_names == tuple(tasks_df.columns[1:])
  np.testing.assert_array_equal(m.features_TxF, tasks_df.iloc[:, 1:].to_numpy(np.float64))
  expected = _expected(space, runs_df)
  # Exact identity: as many architectures as distinct value tuples, none merged or split.
  distinct = {tuple((v + 0.0) if isinstance(v, float) else v for v in row)
              for row in runs_df[list(space.names)].itertuples(index=False)}
  assert len(m.arch_keys) == len(distinct) == len(set(m.arch_keys))
  got = {(m.task_names[t], m.arch_keys[a]): (s, ts, c, n) for t, a, s, ts, c, n in zip(
      m.task_R, m.arch_R, m.score_R, m.test_score_R, m.cost_R, m.num_seeds_R)}
  assert got.keys() == expected.keys()
  # The encoding is the space's, finite and in [0, 1], whichever path built it.
  archs = {space.format({n: row[n] for n in space.names}): {n: row[n] for n in space.names}
           for row in runs_df.to_dict("records")}
  np.testing.assert_array_equal(m.enc_AxE, np.stack([space.encode(archs[k]) for k in m.arch_keys]))
  assert np.all((m.enc_AxE >= 0) & (m.enc_AxE <= 1))
  for k, (s, ts, c, n) in expected.items():
    np.testing.assert_allclose(got[k][:3], (s, ts, c), rtol=1e-12, equal_nan=True)
    assert got[k][3] == n


@pytest.mark.parametrize("runs_format", ["csv", "parquet"])
@_SETTINGS
@hypothesis.given(data=meta_datasets())
def test_a_valid_meta_dataset_loads_to_what_was_written(runs_format, data):
  space, runs_df, tasks_df = data
  _assert_loads_as_written(runs.from_frames(space, runs_df, tasks_df), space, runs_df, tasks_df)
  with tempfile.TemporaryDirectory() as d:
    runs.write_meta_dataset(d, space, runs_df, tasks_df, runs_format=runs_format)
    m = runs.load_meta_dataset(d)
  _assert_loads_as_written(m, space, runs_df, tasks_df)


# ------------------------------------------------------------------------------------------------
# Corruptions: each returns the edited (header, rows) of one file and the message's location.


def _cell(row, col, text):
  row = list(row)
  row[col] = text
  return row


@st.composite
def _runs_corruption(draw, space, header, rows):
  """(header, rows, line, column, message pattern) of one corruption of runs.csv."""
  i = draw(st.integers(0, len(rows) - 1))
  line = i + 2
  kind = draw(st.sampled_from(["score", "choice", "long", "short", "duplicate", "near", "task"]))
  if kind == "score":
    column = draw(st.sampled_from([c for c in ("score", "test_score", "cost") if c in header]))
    text = draw(st.sampled_from(["abc", "", "nan", "inf", "-inf", "1e39", "-3.5e38", "0,5x"]))
    rows = [_cell(r, header.index(column), text) if k == i else r for k, r in enumerate(rows)]
    return header, rows, f"line {line}, column '{column}'"
  if kind == "choice":
    c = draw(st.sampled_from(space.choices))
    if isinstance(c, Categorical):
      text = draw(_text.filter(lambda v: v not in c.values))
    elif isinstance(c, Integer):
      text = draw(st.sampled_from([str(c.high + 1), str(c.low - 1), f"{c.low}.5", "x", ""]))
    else:
      text = draw(st.sampled_from([repr(c.high + abs(c.high) + 1), "nan", "inf", "x", ""]))
    rows = [_cell(r, header.index(c.name), text) if k == i else r for k, r in enumerate(rows)]
    return header, rows, f"line {line}, column '{c.name}'"
  if kind == "long":  # an unquoted decimal comma, or a stray field
    rows = [r + ["5"] if k == i else r for k, r in enumerate(rows)]
    return header, rows, f"line {line}: {len(header) + 1} fields, but the header has"
  if kind == "short":
    rows = [r[:-1] if k == i else r for k, r in enumerate(rows)]
    return header, rows, f"line {line}: {len(header) - 1} field"
  if kind == "duplicate":
    column = draw(st.sampled_from(header))
    return header + [column], [r + [r[header.index(column)]] for r in rows], (
        f"line 1: column '{column}' appears twice")
  if kind == "near":
    column = draw(st.sampled_from(header))
    spelled = draw(st.sampled_from([column.upper(), f" {column}", column.replace("_", "-"),
                                    column + "s"]).filter(lambda s: s not in header))
    return [spelled if h == column else h for h in header], rows, (
        f"line 1: column '{spelled}' nearly spells '{column}'")
  task = draw(_task_name.filter(lambda t: t not in {r[0] for r in rows}))
  rows = [_cell(r, 0, task) if k == i else r for k, r in enumerate(rows)]
  return header, rows, f"line {line}, column 'task'"


def _write_csv(path, header, rows):
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def _text_rows(space, runs_df):
  """runs_df as the text a user's CSV holds (floats by their exact repr)."""
  def spell(v):
    return repr(float(v)) if isinstance(v, (float, np.floating)) else str(v)
  return list(runs_df.columns), [[spell(v) for v in row]
                                 for row in runs_df.itertuples(index=False)]


def _load_error(data, runs_format, name, write):
  """The message of loading a valid meta-dataset in which file `name` was replaced by
  `write(path)`, with the temporary directory's path replaced by `DIR`."""
  with tempfile.TemporaryDirectory() as d:
    runs.write_meta_dataset(d, *data, runs_format=runs_format)
    write(os.path.join(d, name))
    with pytest.raises(MetaDatasetError) as e:
      runs.load_meta_dataset(d)
  return str(e.value).replace(d, "DIR")


@_SETTINGS
@hypothesis.given(data=meta_datasets(), draw=st.data())
def test_a_corrupted_runs_csv_is_an_error_naming_file_line_and_column(data, draw):
  space, runs_df, tasks_df = data
  header, rows = _text_rows(space, runs_df)
  header, rows, where = draw.draw(_runs_corruption(space, header, rows))
  message = _load_error(data, "csv", "runs.csv", lambda p: _write_csv(p, header, rows))
  assert f"DIR/runs.csv, {where}" in message


@_SETTINGS
@hypothesis.given(data=meta_datasets(), draw=st.data())
def test_a_corrupted_tasks_csv_is_an_error_naming_file_line_and_column(data, draw):
  space, runs_df, tasks_df = data
  header = list(tasks_df.columns)
  rows = [[str(v) if isinstance(v, str) else repr(float(v)) for v in row]
          for row in tasks_df.itertuples(index=False)]
  i = draw.draw(st.integers(0, len(rows) - 1))
  column = draw.draw(st.sampled_from(header[1:]))
  text = draw.draw(st.sampled_from(["x", "", "nan", "inf", "4e38", "1e-39", "-1e-40"]))
  rows[i][header.index(column)] = text
  message = _load_error(data, "csv", "tasks.csv", lambda p: _write_csv(p, header, rows))
  assert f"DIR/tasks.csv, line {i + 2}, column '{column}'" in message


@_SETTINGS
@hypothesis.given(data=meta_datasets(), draw=st.data())
def test_a_corrupted_runs_parquet_is_an_error_naming_file_row_and_column(data, draw):
  space, runs_df, tasks_df = data
  i = draw.draw(st.integers(0, len(runs_df) - 1))
  column = draw.draw(st.sampled_from([c for c in runs_df.columns if c != "task"]))
  choice = {c.name: c for c in space.choices}.get(column)
  kind = draw.draw(st.sampled_from(["cell", "type"]))
  runs_df = runs_df.copy()
  if kind == "cell":
    if isinstance(choice, Categorical):
      bad = draw.draw(_text.filter(lambda v: v not in choice.values))
    elif isinstance(choice, Integer):
      bad = choice.high + 1 if choice.high < 2**63 - 1 else choice.low - 1
    else:
      bad = float(draw.draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e39])))
    runs_df[column] = runs_df[column].astype(object)
    runs_df.loc[i, column] = bad
    if not isinstance(choice, Categorical):
      runs_df[column] = pd.to_numeric(runs_df[column])
    where = f"row {i}, column '{column}'"
  else:  # a column of a type that cannot hold what it must
    if isinstance(choice, Categorical):
      runs_df[column] = np.linspace(0.5, 1.5, len(runs_df))
    else:
      runs_df[column] = draw.draw(st.sampled_from([
          np.ones(len(runs_df), bool), pd.date_range("2026-01-01", periods=len(runs_df)),
          np.array(["1"] * len(runs_df), object)]))
    where = f"header, column '{column}': parquet type"
  message = _load_error(data, "parquet", "runs.parquet",
                        lambda p: runs_df.to_parquet(p, index=False))
  assert f"DIR/runs.parquet, {where}" in message
