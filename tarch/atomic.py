"""Atomic file writes: a reader, or a rerun after a kill, sees the old file or the new one.

The binaries resume from what they have written (LOTO folds, generation batches, configs), so a
file cut short by a kill must never be mistaken for a finished one. Each function here writes a
temporary file beside the destination, in the same directory (hence on the same file system), and
renames it over the destination, which POSIX makes atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any


def atomic_write(dest: str | os.PathLike, write: Callable[[str], None]) -> None:
  """Calls `write(tmp)` on a temporary file beside `dest`, then renames it over `dest`.

  Args:
    dest: the file to create or replace; its directory must exist.
    write: writes the complete contents to the path it is given (e.g. `frame.to_parquet`).

  Raises:
    Whatever `write` raises; the temporary file is removed and `dest` is left as it was.
  """
  dest = os.fspath(dest)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=f".{os.path.basename(dest)}.",
                             suffix=".tmp")
  os.close(fd)
  try:
    write(tmp)
    os.replace(tmp, dest)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` atomically, encoded as UTF-8.

  Args:
    path: the file to create or replace; its directory must exist.
    text: the complete contents.
  """

  def write(tmp: str) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)

  atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
  """Writes `obj` as JSON to `path` atomically, ending with a newline.

  Args:
    path: the file to create or replace; its directory must exist.
    obj: anything `json.dumps` accepts.
    indent: passed to `json.dumps`.
  """
  atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")
