"""Tests for tarch.atomic: the destination holds the old contents or the new, never a part."""

import json
import os
import pathlib

import pytest

from tarch import atomic


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
  dest = tmp_path / "out.txt"
  dest.write_text("old")
  atomic.atomic_write(dest, lambda tmp: pathlib.Path(tmp).write_text("new"))
  assert dest.read_text() == "new"
  assert os.listdir(tmp_path) == ["out.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
  dest = tmp_path / "out.txt"
  dest.write_text("old")

  def write(tmp):
    with open(tmp, "w") as f:
      f.write("half")
    raise RuntimeError("killed")

  with pytest.raises(RuntimeError, match="killed"):
    atomic.atomic_write(str(dest), write)
  assert dest.read_text() == "old"
  assert os.listdir(tmp_path) == ["out.txt"]


def test_interrupted_first_write_creates_nothing(tmp_path):
  def write(tmp):
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    atomic.atomic_write(tmp_path / "out.txt", write)
  assert os.listdir(tmp_path) == []


def test_text_and_json(tmp_path):
  atomic.atomic_write_text(tmp_path / "a.txt", "é\n")
  assert (tmp_path / "a.txt").read_bytes() == "é\n".encode()
  obj = {"b": [1, 2.5, None], "a": "x"}
  atomic.atomic_write_json(tmp_path / "a.json", obj)
  text = (tmp_path / "a.json").read_text()
  assert text.endswith("}\n") and json.loads(text) == obj
  atomic.atomic_write_json(tmp_path / "a.json", [1], indent=None)
  assert (tmp_path / "a.json").read_text() == "[1]\n"
