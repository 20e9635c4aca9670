"""Fingerprints of cached results that change whenever the code that computed them changes.

A job that caches results in its workdir (the offline phase's batches, LOTO's folds) must not
mix results of different code. A hand-bumped format number misses changes whose authors did not
think of the cache, so the fingerprint here hashes the package's source itself:
`source_digest()` is a sha256 over every `.py` file of the imported package, and `fingerprint`
combines it with what the job was asked to compute (a config) and the data it read (arrays,
strings). Any edit to the package's source, a comment included, gives a new fingerprint: a cache
can be recomputed without need, never reused wrongly.

  from tarch import fingerprint
  key = fingerprint.fingerprint(config, task_names, x_TxNxD)   # 16 hex characters
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

DEFAULT_LENGTH = 16  # hex characters of `fingerprint`: 64 bits, ample to tell runs of a job apart


@functools.cache
def source_digest(package: str = "tarch") -> str:
  """The sha256 hex digest of the source of `package` as this process imports it.

  Hashes the sorted relative paths and the bytes of every `.py` file under the package's
  directory (subpackages included), located through the import system, so that a copy of the
  package earlier on `PYTHONPATH` (a git worktree, say) hashes its own files. Computed once per
  process and package: a job hashes the code it started with.

  Args:
    package: an importable package name (a directory with `__init__.py`, not a single module).

  Returns:
    64 hex characters.
  """
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise ValueError(f"{package!r} is not an importable package directory")
  digest = hashlib.sha256()
  for location in spec.submodule_search_locations:
    root = pathlib.Path(location)
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
      # The length prefixes keep file boundaries unambiguous.
      name, content = path.relative_to(root).as_posix().encode(), path.read_bytes()
      digest.update(b"%d:%s%d:" % (len(name), name, len(content)))
      digest.update(content)
  return digest.hexdigest()


def fingerprint(config: Any = None, *parts: Any, package: str = "tarch",
                length: int = DEFAULT_LENGTH) -> str:
  """A short hex id of (config, parts, source of `package`).

  Args:
    config: what the job was asked to compute: an `ml_collections.ConfigDict` (hashed as
      `to_json(sort_keys=True)`), a JSON-serialisable mapping, or None.
    *parts: the data it reads, in a fixed order: numpy or JAX arrays (their dtype, shape and
      bytes), `str` or `bytes`. Anything else raises `TypeError` rather than hash a `repr` that
      may hide content.
    package: whose source digest (`source_digest`) goes in.
    length: hex characters kept, 1..64.

  Returns:
    `length` hex characters; equal inputs under equal source give equal fingerprints.
  """
  if not 1 <= length <= 64:
    raise ValueError(f"length must lie in 1..64, got {length}")
  h = hashlib.sha256(b"source " + source_digest(package).encode())
  if config is None:
    text = "null"
  elif hasattr(config, "to_json"):
    text = config.to_json(sort_keys=True)
  elif isinstance(config, Mapping):
    text = json.dumps(config, sort_keys=True)
  else:
    raise TypeError(f"config must be a ConfigDict, a mapping or None, got {type(config).__name__}")
  _update(h, b"config", text.encode())
  for part in parts:
    if isinstance(part, str):
      _update(h, b"str", part.encode())
    elif isinstance(part, bytes):
      _update(h, b"bytes", part)
    elif isinstance(part, np.ndarray) or hasattr(part, "__array__"):
      array = np.ascontiguousarray(np.asarray(part))
      if array.dtype == object:
        raise TypeError("object arrays have no stable bytes; pass their elements as strings")
      _update(h, b"array", f"{array.dtype.str} {array.shape}".encode())
      h.update(array.tobytes())
    else:
      raise TypeError(f"cannot fingerprint a {type(part).__name__}; pass arrays, str or bytes")
  return h.hexdigest()[:length]


def _update(h, tag: bytes, payload: bytes) -> None:
  """Feeds a tagged, length-prefixed item, so that ("ab", "c") and ("a", "bc") differ."""
  h.update(b"%s %d:" % (tag, len(payload)))
  h.update(payload)
