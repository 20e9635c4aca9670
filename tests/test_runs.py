"""Tests for tarch.runs: loading, validation messages, seed averaging and writing."""

import csv
import json
import os

import numpy as np
import pandas as pd
import pytest

from tarch import runs
from tarch.runs import MetaDatasetError
from tarch.space import Space

SPACE = {
    "name": "toy",
    "choices": [
        # "0001" and "None" check that categorical values stay strings.
        {"name": "op", "type": "categorical", "values": ["gcn", "0001", "None"]},
        {"name": "layers", "type": "int", "low": 1, "high": 5},
        {"name": "lr", "type": "float", "low": 1e-4, "high": 0.1, "log": True},
    ],
}
RUN_COLUMNS = ["task", "op", "layers", "lr", "score", "test_score", "cost", "note"]
# Line numbers in runs.csv: the header is line 1, so RUNS[i] is on line i + 2.
RUNS = [
    ["a", "gcn", "2", "0.01", "0.5", "0.4", "10", "x"],
    ["a", "gcn", "2", "0.01", "0.7", "0.6", "20", "y"],  # a second seed of the row above
    ["a", "0001", "3", "0.001", "0.9", "0.8", "5", ""],
    ["b", "None", "1", "0.1", "0.2", "0.1", "1", ""],
    ["b", "gcn", "2", "0.01", "0.3", "0.2", "2", ""],
]
TASK_COLUMNS = ["task", "f1", "f2"]
TASKS = [["a", "1.0", "2.0"], ["b", "3.0", "-4.5"]]


def _write_csv(path, columns, rows):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    writer.writerows(rows)


def write_dir(root, space=SPACE, run_columns=RUN_COLUMNS, run_rows=RUNS,
              task_columns=TASK_COLUMNS, task_rows=TASKS):
  """Writes a meta-dataset directory from Python lists; None skips that file."""
  os.makedirs(root, exist_ok=True)
  if space is not None:
    with open(os.path.join(root, "space.json"), "w") as f:
      f.write(space if isinstance(space, str) else json.dumps(space))
  if run_rows is not None:
    _write_csv(os.path.join(root, "runs.csv"), run_columns, run_rows)
  if task_rows is not None:
    _write_csv(os.path.join(root, "tasks.csv"), task_columns, task_rows)
  return root


def _with(rows, i, column, value, columns=RUN_COLUMNS):
  """Copy of `rows` with one cell replaced."""
  rows = [list(r) for r in rows]
  rows[i][columns.index(column)] = value
  return rows


def _without(columns, rows, column):
  """Copy of the table without `column`."""
  j = columns.index(column)
  return [c for c in columns if c != column], [r[:j] + r[j + 1:] for r in rows]


# The numeric columns' types, for writing RUNS (all text) as parquet.
_NUMERIC_TYPES = {"layers": int, "lr": float, "score": float, "test_score": float, "cost": float}


def _frames():
  space = Space.from_dict(SPACE)
  runs_df = pd.DataFrame(RUNS, columns=RUN_COLUMNS)
  tasks_df = pd.DataFrame(TASKS, columns=TASK_COLUMNS)
  return space, runs_df, tasks_df


def _assert_same(m1, m2):
  assert m1.space == m2.space
  for field in ("task_names", "feature_names", "arch_keys"):
    assert getattr(m1, field) == getattr(m2, field)
  for field in ("features_TxF", "enc_AxE", "task_R", "arch_R", "score_R", "test_score_R",
                "cost_R", "num_seeds_R"):
    a, b = getattr(m1, field), getattr(m2, field)
    assert a.dtype == b.dtype, field
    np.testing.assert_array_equal(a, b, err_msg=field)


# ------------------------------------------------------------------------------------------------
# Valid input


def test_load_shapes_and_seed_averaging(tmp_path):
  m = runs.load_meta_dataset(write_dir(tmp_path))
  assert m.task_names == ("a", "b")
  assert m.feature_names == ("f1", "f2")
  np.testing.assert_array_equal(m.features_TxF, [[1.0, 2.0], [3.0, -4.5]])
  assert m.features_TxF.dtype == np.float64
  assert m.arch_keys == ("op=gcn,layers=2,lr=0.01", "op=0001,layers=3,lr=0.001",
                         "op=None,layers=1,lr=0.1")
  assert (m.num_tasks, m.num_archs, m.num_features) == (2, 3, 2)
  assert m.enc_AxE.shape == (3, m.space.dim) and m.enc_AxE.dtype == np.float32
  np.testing.assert_array_equal(m.enc_AxE[1], m.space.encode({"op": "0001", "layers": 3,
                                                              "lr": 0.001}))
  # Results sorted by (task, arch); the two seeds of (a, arch 0) are averaged.
  np.testing.assert_array_equal(m.task_R, [0, 0, 1, 1])
  np.testing.assert_array_equal(m.arch_R, [0, 1, 0, 2])
  np.testing.assert_allclose(m.score_R, [0.6, 0.9, 0.3, 0.2])
  np.testing.assert_allclose(m.test_score_R, [0.5, 0.8, 0.2, 0.1])
  np.testing.assert_allclose(m.cost_R, [15, 5, 2, 1])
  np.testing.assert_array_equal(m.num_seeds_R, [2, 1, 1, 1])
  assert m.task_R.dtype == m.arch_R.dtype == m.num_seeds_R.dtype == np.int32
  assert m.score_R.dtype == m.test_score_R.dtype == m.cost_R.dtype == np.float64
  assert m.has_cost
  assert m.source == str(tmp_path)
  np.testing.assert_array_equal(m.task_rows(1), [2, 3])
  np.testing.assert_array_equal(m.arch_R[m.task_rows(1)], [0, 2])


def test_optional_columns_absent(tmp_path):
  columns, rows = _without(RUN_COLUMNS, RUNS, "test_score")
  columns, rows = _without(columns, rows, "cost")
  m = runs.load_meta_dataset(write_dir(tmp_path, run_columns=columns, run_rows=rows))
  np.testing.assert_array_equal(m.test_score_R, m.score_R)
  assert np.isnan(m.cost_R).all() and not m.has_cost


def test_architecture_identity_is_exact_for_floats(tmp_path):
  # 0.0100000001 is not 0.01: two architectures, keys spelled apart (the old 6-digit key merged
  # them); a value written differently but equal in float64 (1.0e-2) is the same one.
  rows = _with(RUNS, 1, "lr", "0.0100000001")
  rows = _with(rows, 4, "lr", "1.0e-2")
  m = runs.load_meta_dataset(write_dir(tmp_path, run_rows=rows))
  assert m.num_archs == 4
  np.testing.assert_array_equal(m.num_seeds_R, [1, 1, 1, 1, 1])
  assert "op=gcn,layers=2,lr=0.0100000001" in m.arch_keys
  assert "op=gcn,layers=2,lr=0.01" in m.arch_keys
  assert len(set(m.arch_keys)) == m.num_archs


def test_architecture_identity_is_exact_for_big_integers(tmp_path):
  space = json.loads(json.dumps(SPACE))
  space["choices"][1]["high"] = 2**60
  rows = _with(RUNS, 0, "layers", str(2**53))
  rows = _with(rows, 1, "layers", str(2**53 + 1))
  rows = _with(rows, 2, "layers", "3.0")  # an integral float is an integer, where exact
  m = runs.load_meta_dataset(write_dir(tmp_path, space=space, run_rows=rows))
  assert m.num_archs == 5
  assert f"op=gcn,layers={2**53 + 1},lr=0.01" in m.arch_keys
  assert "op=0001,layers=3,lr=0.001" in m.arch_keys
  # Beyond the bound, by one: a float64 reading would have rounded it into range.
  space["choices"][1]["high"] = 2**53
  with pytest.raises(MetaDatasetError, match=r"runs.csv, line 3, column 'layers': value "
                     rf"'{2**53 + 1}' outside \[1, {2**53}\]"):
    runs.load_meta_dataset(write_dir(tmp_path / "over", space=space, run_rows=rows))


def test_categorical_values_with_separators_stay_apart(tmp_path):
  # With a naive `name=value` key, op="a,b=c" and op="a" + b="c" would both read `op=a,b=c`.
  space = {"name": "sep", "choices": [
      {"name": "op", "type": "categorical", "values": ["a,b=c", "a", 'q"uote', " pad"]},
      {"name": "b", "type": "categorical", "values": ["c", "a,b=c"]}]}
  columns = ["task", "op", "b", "score"]
  rows = [["t", "a,b=c", "a,b=c", "1"], ["t", "a", "c", "2"], ["t", 'q"uote', "c", "3"],
          ["t", " pad", "c", "4"], ["t", "a,b=c", "c", "5"]]
  m = runs.load_meta_dataset(write_dir(tmp_path, space=space, run_columns=columns,
                                       run_rows=rows, task_rows=[["t", "1.0", "2.0"]]))
  assert m.num_archs == 5
  assert len(set(m.arch_keys)) == 5
  assert 'op="a,b=c",b="a,b=c"' in m.arch_keys and 'op=" pad",b=c' in m.arch_keys


def test_csv_and_parquet_agree(tmp_path):
  m_csv = runs.load_meta_dataset(write_dir(tmp_path / "csv"))
  write_dir(tmp_path / "pq", run_rows=None)
  pd.read_csv(tmp_path / "csv" / "runs.csv", dtype={"task": str, "op": str},
              keep_default_na=False).astype(_NUMERIC_TYPES).to_parquet(
                  tmp_path / "pq" / "runs.parquet")
  _assert_same(m_csv, runs.load_meta_dataset(tmp_path / "pq"))


@pytest.mark.parametrize("runs_format", ["csv", "parquet"])
def test_write_round_trip(tmp_path, runs_format):
  space, runs_df, tasks_df = _frames()
  expected = runs.from_frames(space, runs_df, tasks_df)
  runs.write_meta_dataset(tmp_path, space, runs_df, tasks_df, runs_format=runs_format)
  _assert_same(expected, runs.load_meta_dataset(tmp_path))
  # Switching format replaces the other runs file, so the directory still loads.
  other = "parquet" if runs_format == "csv" else "csv"
  runs.write_meta_dataset(tmp_path, space, runs_df, tasks_df, runs_format=other)
  _assert_same(expected, runs.load_meta_dataset(tmp_path))
  assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_write_rejects_invalid_tables_and_writes_nothing(tmp_path):
  space, runs_df, tasks_df = _frames()
  runs_df.loc[3, "op"] = "gat"
  with pytest.raises(MetaDatasetError, match=r"runs\.parquet, row 3, column 'op'"):
    runs.write_meta_dataset(tmp_path / "out", space, runs_df, tasks_df)
  assert not (tmp_path / "out").exists()
  with pytest.raises(ValueError, match="runs_format"):
    runs.write_meta_dataset(tmp_path / "out", *_frames(), runs_format="json")


def test_from_frames_accepts_non_string_categoricals():
  space = Space.from_dict({"name": "s", "choices": [
      {"name": "width", "type": "categorical", "values": ["16", "32"]}]})
  runs_df = pd.DataFrame({"task": ["t", "t"], "width": [16, 32], "score": [1.0, 2.0]},
                         index=[10, 20])  # a non-default index must not matter
  tasks_df = pd.DataFrame({"task": ["t"], "f": [0.0]})
  m = runs.from_frames(space, runs_df, tasks_df)
  assert m.arch_keys == ("width=16", "width=32")
  assert m.source == ""


# ------------------------------------------------------------------------------------------------
# Invalid runs


@pytest.mark.parametrize("row, column, value, problem", [
    (2, "op", "gat", r"unknown value 'gat'; valid: \['gcn', '0001', 'None'\]"),
    (2, "op", "", r"unknown value ''"),
    (2, "op", "1", r"unknown value '1'"),
    (3, "layers", "7", r"outside \[1, 5\]"),
    (3, "layers", "0", r"outside \[1, 5\]"),
    (3, "layers", "2.5", r"expected an integer"),
    (3, "layers", "two", r"expected an integer, got 'two'"),
    (3, "layers", "2.0000000000000001", r"expected an integer, got '2.0000000000000001'"),
    (3, "layers", "3.000000000000001", r"expected an integer"),
    (3, "score", "true", r"score must be a number, got 'true'"),
    (1, "lr", "1.0", r"outside \[0\.0001, 0\.1\]"),
    (1, "lr", "", r"must be a number, got ''"),
    (1, "lr", "nan", r"outside"),
    (4, "score", "nan", r"score must be finite"),
    (4, "score", "inf", r"score must be finite"),
    (4, "score", "high", r"score must be a number"),
    (0, "test_score", "-inf", r"test score must be finite"),
    (0, "cost", "-1", r"cost must be >= 0"),
    (0, "cost", "nan", r"cost must be finite"),
    # Finite in float64, not in tarch's float32 arithmetic: an error, not an overflow later.
    (4, "score", "1e39", r"score 1e\+39 is outside \+-1\.701e\+38: tarch computes in float32"),
    (4, "score", "-1.7e308", r"outside \+-1\.701e\+38"),
    (0, "test_score", "3e38", r"test score 3e\+38 is outside"),
    (0, "cost", "1e300", r"cost 1e\+300 is outside"),
    (3, "task", "", r"empty task name"),
    (3, "task", "  ", r"empty task name"),
    (3, "task", "zzz", r"task 'zzz' is not in .*tasks\.csv"),
])
def test_bad_runs_cell(tmp_path, row, column, value, problem):
  write_dir(tmp_path, run_rows=_with(RUNS, row, column, value))
  line = row + 2
  with pytest.raises(MetaDatasetError, match=rf"runs\.csv, line {line}, column '{column}': .*"
                     + problem):
    runs.load_meta_dataset(tmp_path)


def test_error_reports_first_row_and_count(tmp_path):
  rows = _with(_with(RUNS, 1, "op", "gat"), 3, "op", "gin")
  write_dir(tmp_path, run_rows=rows)
  with pytest.raises(MetaDatasetError, match=r"line 3, column 'op'.*'gat'.*\(1 more such row\)"):
    runs.load_meta_dataset(tmp_path)


@pytest.mark.parametrize("column", ["task", "op", "layers", "lr", "score"])
def test_missing_required_column(tmp_path, column):
  columns, rows = _without(RUN_COLUMNS, RUNS, column)
  write_dir(tmp_path, run_columns=columns, run_rows=rows)
  with pytest.raises(MetaDatasetError,
                     match=rf"runs\.csv, line 1 \(header\), column '{column}': missing"):
    runs.load_meta_dataset(tmp_path)


def test_runs_without_rows(tmp_path):
  write_dir(tmp_path, run_rows=[])
  with pytest.raises(MetaDatasetError, match=r"runs\.csv: no runs"):
    runs.load_meta_dataset(tmp_path)


def test_empty_runs_file(tmp_path):
  write_dir(tmp_path)
  (tmp_path / "runs.csv").write_text("")
  with pytest.raises(MetaDatasetError, match=r"runs\.csv: empty file"):
    runs.load_meta_dataset(tmp_path)


def test_short_row_is_an_error(tmp_path):
  write_dir(tmp_path)
  with open(tmp_path / "runs.csv", "a") as f:
    f.write("b,gcn\n")
  with pytest.raises(MetaDatasetError, match=r"runs\.csv, line 7: 2 fields, but the header has 8"):
    runs.load_meta_dataset(tmp_path)


def _rewrite_runs(root, edit):
  """Rewrites runs.csv's bytes (written with '\\n' line ends) through `edit`."""
  path = os.path.join(root, "runs.csv")
  with open(path, "rb") as f:
    raw = f.read().replace(b"\r\n", b"\n")
  with open(path, "wb") as f:
    f.write(edit(raw))


@pytest.mark.parametrize("edit", [
    lambda b: b.replace(b"\n", b"\r\n"),
    lambda b: b.replace(b"\n", b"\r"),  # old Mac line ends: no line may look long
    lambda b: b.replace(b"\n", b"\n\n   \n", 2),  # blank and whitespace-only lines are skipped
    lambda b: b.rstrip(b"\n"),
    lambda b: b"\xef\xbb\xbf" + b,
])
def test_line_ends_blank_lines_and_byte_order_marks_load(tmp_path, edit):
  write_dir(tmp_path)
  expected = runs.load_meta_dataset(tmp_path)
  _rewrite_runs(tmp_path, edit)
  m = runs.load_meta_dataset(tmp_path)
  assert m.arch_keys == expected.arch_keys
  np.testing.assert_array_equal(m.score_R, expected.score_R)


@pytest.mark.parametrize("edit, message", [
    (lambda b: b.replace(b"None", b"N\xe9"), r"line 5: byte 0xe9 is not UTF-8"),
    # A quote opened and never closed, in a middle column and in the last one.
    (lambda b: b.replace(b"b,gcn", b'b,"gcn'),
     r"line 6: 2 fields, but the header has 8 \(a quoted field opened on this line is never"),
    (lambda b: b.replace(b",y\n", b',"y\n'),
     r"line 3: a quoted field opened on this line is never closed"),
])
def test_bad_bytes_and_open_quotes_are_located(tmp_path, edit, message):
  write_dir(tmp_path)
  _rewrite_runs(tmp_path, edit)
  with pytest.raises(MetaDatasetError, match=r"runs\.csv, " + message):
    runs.load_meta_dataset(tmp_path)


def test_line_numbers_survive_blank_lines_and_quoted_newlines(tmp_path):
  write_dir(tmp_path)
  text = (tmp_path / "runs.csv").read_text().splitlines()
  # A blank line after line 2 and a note spanning two lines on (new) line 5.
  text[2] = text[2].replace(",y", ',"multi\nline"')
  text.insert(2, "")
  text.append("b,gat,2,0.01,0.3,0.2,2,")
  (tmp_path / "runs.csv").write_text("\n".join(text) + "\n")
  with pytest.raises(MetaDatasetError, match=r"runs\.csv, line 9, column 'op': unknown value"):
    runs.load_meta_dataset(tmp_path)


def test_parquet_errors_name_the_data_row(tmp_path):
  write_dir(tmp_path, run_rows=None)
  pd.DataFrame(_with(RUNS, 2, "score", "nan"), columns=RUN_COLUMNS).astype(
      _NUMERIC_TYPES).to_parquet(tmp_path / "runs.parquet")
  with pytest.raises(MetaDatasetError, match=r"runs\.parquet, row 2, column 'score': score must"):
    runs.load_meta_dataset(tmp_path)


@pytest.mark.parametrize("column,values,want", [
    ("score", [True, False, True, False, True], "numbers"),  # bools would load as 1/0
    ("score", pd.to_datetime(["2024-01-01"] * 5), "numbers"),  # timestamps as nanoseconds
    ("score", ["0.5", "0.7", "0.9", "0.2", "0.3"], "numbers"),
    ("cost", [True] * 5, "numbers"),
    ("layers", ["2", "2", "3", "1", "2"], "numbers"),
    ("layers", [True] * 5, "numbers"),
    ("lr", ["0.01"] * 5, "numbers"),
    ("op", [1.5, 1.5, 2.5, 0.5, 1.5], "text"),
    ("task", [1.0, 1.0, 1.0, 2.0, 2.0], "text"),
])
def test_parquet_column_types_are_checked(tmp_path, column, values, want):
  write_dir(tmp_path, run_rows=None)
  df = pd.DataFrame(RUNS, columns=RUN_COLUMNS).astype(_NUMERIC_TYPES)
  df[column] = values
  df.to_parquet(tmp_path / "runs.parquet")
  with pytest.raises(MetaDatasetError, match=rf"runs\.parquet, header, column '{column}': "
                     rf"parquet type .*; expected {want}"):
    runs.load_meta_dataset(tmp_path)


def test_parquet_integer_categoricals_and_tasks_load(tmp_path):
  # Integers spell categorical values and task names exactly, so they are accepted.
  space = json.loads(json.dumps(SPACE))
  space["choices"][0]["values"] = ["1", "2", "3"]
  write_dir(tmp_path, space=space, run_rows=None, task_rows=[["1", "1.0", "2.0"],
                                                             ["2", "3.0", "-4.5"]])
  df = pd.DataFrame(RUNS, columns=RUN_COLUMNS).astype(_NUMERIC_TYPES)
  df["task"] = [1, 1, 1, 2, 2]
  df["op"] = [1, 1, 2, 3, 1]
  df.to_parquet(tmp_path / "runs.parquet")
  m = runs.load_meta_dataset(tmp_path)
  assert m.task_names == ("1", "2") and m.arch_keys[0] == "op=1,layers=2,lr=0.01"


def test_from_frames_names_sources():
  space, runs_df, tasks_df = _frames()
  runs_df.loc[4, "layers"] = "9"
  with pytest.raises(MetaDatasetError, match=r"my_runs\.csv, line 6, column 'layers'"):
    runs.from_frames(space, runs_df, tasks_df, runs_source="my_runs.csv")
  with pytest.raises(MetaDatasetError, match=r"x\.parquet, row 4, column 'layers'"):
    runs.from_frames(space, runs_df, tasks_df, runs_source="x.parquet")


@pytest.mark.parametrize("rows, line, fields", [
    (_with(RUNS, 2, "note", "0,5"), 4, 9),  # an unquoted decimal comma on one line
    ([r + ["extra"] for r in RUNS], 2, 9),  # a stray trailing field on every line
    (_with(RUNS, 3, "note", '"x,y"') + [["t1", "a", "2", "0.01", "0.5", "0.4", "1.0"]], 7, 7),
    ([r[:-1] for r in RUNS], 2, 7),  # a header with a column no line fills
])
def test_a_line_of_another_width_than_the_header_is_an_error(tmp_path, rows, line, fields):
  """Neither a shifted nor a dropped value: pandas would read every later column one off, or
  the first column as the index, or fill a short line with missing values."""
  write_dir(tmp_path)
  with open(tmp_path / "runs.csv", "w", newline="") as f:  # unquoted, as a careless writer does
    f.write(",".join(RUN_COLUMNS) + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
  with pytest.raises(MetaDatasetError,
                     match=rf"runs\.csv, line {line}: {fields} fields, but the header has 8"):
    runs.load_meta_dataset(tmp_path)


@pytest.mark.parametrize("columns, message", [
    (RUN_COLUMNS[:-1] + ["score"], r"column 'score' appears twice \(columns 5 and 8\)"),
    (RUN_COLUMNS[:-1] + ["op"], r"column 'op' appears twice"),
    (["task", "op", "layers", "lr", "score", "Test_Score", "cost", "note"],
     r"column 'Test_Score' nearly spells 'test_score'; rename it to 'test_score'"),
    (["task", "op", "layers", "lr", "score", "test-score", "cost", "note"],
     r"column 'test-score' nearly spells 'test_score'"),
    (["task", "op", "layers", "lr", "score", "test score", "cost", "note"],
     r"column 'test score' nearly spells 'test_score'"),
    (["task", "op", "layers", "lr", "score", "test_score", "costs", "note"],
     r"column 'costs' nearly spells 'cost'"),
    (["task", "op", "layers", "lr", "score", "test_score", "cost ", "note"],
     r"column 'cost ' nearly spells 'cost'"),
    (["task", "op", "Layers", "lr", "score", "test_score", "cost", "note"],
     r"column 'Layers' nearly spells 'layers'"),
])
def test_repeated_or_nearly_reserved_columns_are_errors(tmp_path, columns, message):
  write_dir(tmp_path, run_columns=columns)
  with pytest.raises(MetaDatasetError, match=r"runs\.csv, line 1: " + message):
    runs.load_meta_dataset(tmp_path)


def test_repeated_meta_feature_and_near_miss_task_column_are_errors(tmp_path):
  write_dir(tmp_path, task_columns=["task", "f1", "f1"])
  with pytest.raises(MetaDatasetError, match=r"tasks\.csv, line 1: column 'f1' appears twice"):
    runs.load_meta_dataset(tmp_path)
  write_dir(tmp_path, task_columns=[" Task", "f1", "f2"])
  with pytest.raises(MetaDatasetError, match=r"tasks\.csv, line 1: column ' Task' nearly spells"):
    runs.load_meta_dataset(tmp_path)


def test_parquet_columns_are_checked_as_a_header_is(tmp_path):
  space, runs_df, tasks_df = _frames()
  runs.write_meta_dataset(tmp_path, space, runs_df, tasks_df, runs_format="parquet")
  runs_df.astype(_NUMERIC_TYPES).rename(columns={"test_score": "TEST_SCORE"}).to_parquet(
      tmp_path / "runs.parquet")
  with pytest.raises(MetaDatasetError, match=r"runs\.parquet, header: column 'TEST_SCORE' nearly"):
    runs.load_meta_dataset(tmp_path)


def test_choice_named_like_a_runs_column_is_rejected(tmp_path):
  space = Space.from_dict({"name": "s", "choices": [
      {"name": "score", "type": "int", "low": 1, "high": 3}]})
  with pytest.raises(MetaDatasetError, match="'score'"):
    runs.from_frames(space, pd.DataFrame({"task": ["t"], "score": [1.0]}),
                     pd.DataFrame({"task": ["t"], "f": [0.0]}))
  write_dir(tmp_path, space=space.to_dict())
  with pytest.raises(MetaDatasetError, match=r"space\.json: choice 'score' is named like"):
    runs.load_meta_dataset(tmp_path)
  space = Space.from_dict({"name": "s", "choices": [
      {"name": "Test Score", "type": "int", "low": 1, "high": 3}]})
  write_dir(tmp_path, space=space.to_dict())
  with pytest.raises(MetaDatasetError, match=r"space\.json: choice 'Test Score' is named like "
                     r"the reserved runs column 'test_score'"):
    runs.load_meta_dataset(tmp_path)


# ------------------------------------------------------------------------------------------------
# Invalid tasks


def test_task_without_runs(tmp_path):
  write_dir(tmp_path, task_rows=TASKS + [["c", "0", "0"]])
  with pytest.raises(MetaDatasetError,
                     match=r"tasks\.csv, line 4, column 'task': task 'c' has no rows in .*runs"):
    runs.load_meta_dataset(tmp_path)


def test_duplicate_task(tmp_path):
  write_dir(tmp_path, task_rows=TASKS + [["a", "0", "0"]])
  with pytest.raises(MetaDatasetError,
                     match=r"tasks\.csv, line 4, column 'task': duplicate task 'a' .*line 2"):
    runs.load_meta_dataset(tmp_path)


def test_empty_task_in_tasks_csv(tmp_path):
  write_dir(tmp_path, task_rows=[["a", "1", "2"], ["", "1", "2"], ["b", "1", "2"]])
  with pytest.raises(MetaDatasetError, match=r"tasks\.csv, line 3, column 'task': empty task"):
    runs.load_meta_dataset(tmp_path)


@pytest.mark.parametrize("value, problem", [
    ("abc", "must be a number, got 'abc'"), ("", "must be a number"), ("inf", "must be finite"),
    ("NaN", "must be finite"), ("1e39", r"meta-feature 1e\+39 is outside \+-1\.701e\+38"),
    ("-2e38", "is outside"), ("1e-40", "nonzero but below float32's smallest normal")])
def test_bad_meta_feature(tmp_path, value, problem):
  write_dir(tmp_path, task_rows=_with(TASKS, 1, "f2", value, columns=TASK_COLUMNS))
  with pytest.raises(MetaDatasetError, match=rf"tasks\.csv, line 3, column 'f2': .*{problem}"):
    runs.load_meta_dataset(tmp_path)


def test_tasks_without_features(tmp_path):
  write_dir(tmp_path, task_columns=["task"], task_rows=[["a"], ["b"]])
  with pytest.raises(MetaDatasetError, match=r"tasks\.csv, line 1 \(header\): no meta-feature"):
    runs.load_meta_dataset(tmp_path)


def test_tasks_without_task_column(tmp_path):
  write_dir(tmp_path, task_columns=["name", "f1", "f2"])
  with pytest.raises(MetaDatasetError, match=r"tasks\.csv, line 1 \(header\), column 'task'"):
    runs.load_meta_dataset(tmp_path)


# ------------------------------------------------------------------------------------------------
# Missing files and bad space.json


@pytest.mark.parametrize("kwargs, missing", [
    ({"space": None}, "space.json"),
    ({"task_rows": None}, "tasks.csv"),
    ({"run_rows": None}, "runs.csv or runs.parquet"),
    ({"space": None, "task_rows": None}, "space.json, tasks.csv"),
])
def test_missing_files(tmp_path, kwargs, missing):
  write_dir(tmp_path, **kwargs)
  with pytest.raises(MetaDatasetError, match=rf"missing {missing}"):
    runs.load_meta_dataset(tmp_path)


def test_not_a_directory(tmp_path):
  with pytest.raises(MetaDatasetError, match="not a directory"):
    runs.load_meta_dataset(tmp_path / "nope")


def test_both_runs_files(tmp_path):
  write_dir(tmp_path)
  pd.DataFrame(RUNS, columns=RUN_COLUMNS).to_parquet(tmp_path / "runs.parquet")
  with pytest.raises(MetaDatasetError, match=r"both runs\.csv and runs\.parquet"):
    runs.load_meta_dataset(tmp_path)


@pytest.mark.parametrize("space", [
    "{not json",
    {"name": "s", "choices": []},
    {"name": "s", "choices": [SPACE["choices"][0], SPACE["choices"][0]]},
    {"name": "s", "choices": [{"name": "x", "type": "int", "low": 3, "high": 1}]},
])
def test_bad_space_json(tmp_path, space):
  write_dir(tmp_path, space=space)
  with pytest.raises(MetaDatasetError, match=r"space\.json"):
    runs.load_meta_dataset(tmp_path)


# ------------------------------------------------------------------------------------------------
# select_tasks


def test_select_tasks(tmp_path):
  m = runs.load_meta_dataset(write_dir(tmp_path))
  sub = m.select_tasks(["b"])
  assert sub.task_names == ("b",) and sub.arch_keys == m.arch_keys
  np.testing.assert_array_equal(sub.features_TxF, [[3.0, -4.5]])
  np.testing.assert_array_equal(sub.task_R, [0, 0])
  np.testing.assert_array_equal(sub.arch_R, [0, 2])
  np.testing.assert_allclose(sub.score_R, [0.3, 0.2])

  rev = m.select_tasks([1, "a"])  # indices and names, in the order given
  assert rev.task_names == ("b", "a")
  for new, old in ((0, 1), (1, 0)):
    np.testing.assert_array_equal(rev.arch_R[rev.task_rows(new)], m.arch_R[m.task_rows(old)])
    np.testing.assert_array_equal(rev.score_R[rev.task_rows(new)], m.score_R[m.task_rows(old)])
    np.testing.assert_array_equal(rev.features_TxF[new], m.features_TxF[old])

  assert m.select_tasks([]).score_R.shape == (0,)
  with pytest.raises(ValueError, match="unknown task 'zzz'"):
    m.select_tasks(["zzz"])
  with pytest.raises(ValueError, match="out of range"):
    m.select_tasks([2])
  with pytest.raises(ValueError, match="more than once"):
    m.select_tasks(["a", 0])



@pytest.mark.parametrize("column", ["score", "cost", "lr"])
def test_a_column_of_booleans_is_not_read_as_numbers(tmp_path, column):
  """pandas reads a CSV column of only true/false as booleans, which numeric conversion would
  take for 1/0."""
  rows = [_with([r], 0, column, "true" if i % 2 else "False")[0] for i, r in enumerate(RUNS)]
  write_dir(tmp_path, run_rows=rows)
  with pytest.raises(MetaDatasetError, match=rf"runs\.csv, line 2, column '{column}': .*"
                     r"must be a number, got False \(a column of True/False\)"):
    runs.load_meta_dataset(tmp_path)
  write_dir(tmp_path, task_rows=[["a", "true", "2.0"], ["b", "false", "-4.5"]])
  with pytest.raises(MetaDatasetError, match=r"tasks\.csv, line 2, column 'f1': meta-feature "
                     r"must be a number, got True"):
    runs.load_meta_dataset(tmp_path)


def test_an_unnamed_tasks_column_is_an_error_not_a_meta_feature(tmp_path):
  write_dir(tmp_path, task_columns=["", "task", "f1", "f2"],
            task_rows=[["0"] + TASKS[0], ["1"] + TASKS[1]])
  with pytest.raises(MetaDatasetError, match=r"tasks\.csv, line 1: column 1 has no name \(an "
                     r"index written by pandas' to_csv\?"):
    runs.load_meta_dataset(tmp_path)


def test_a_parquet_with_the_task_as_index_loads(tmp_path):
  space, runs_df, tasks_df = _frames()
  runs.write_meta_dataset(tmp_path, space, runs_df, tasks_df, runs_format="parquet")
  expected = runs.load_meta_dataset(tmp_path)
  runs_df.astype(_NUMERIC_TYPES).set_index("task").to_parquet(tmp_path / "runs.parquet")
  m = runs.load_meta_dataset(tmp_path)
  assert m.arch_keys == expected.arch_keys
  np.testing.assert_array_equal(m.score_R, expected.score_R)


@pytest.mark.parametrize("line", ["\x0c", '""'])
def test_a_line_pandas_reads_as_a_row_is_located_on_its_own_line(tmp_path, line):
  write_dir(tmp_path)
  _rewrite_runs(tmp_path, lambda b: b.replace(b"0.5,0.4,10,x\n", b"0.5,0.4,10,x\n" + line.encode()
                                              + b"\n"))
  with pytest.raises(MetaDatasetError, match=r"runs\.csv, line 3: 1 field, but the header has 8"):
    runs.load_meta_dataset(tmp_path)
