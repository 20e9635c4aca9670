"""Fingerprints follow the package's source and every input, and nothing else."""

import os
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

import tarch
from tarch import fingerprint

_PRINT_DIGEST = ("from tarch import fingerprint; "
                 "print(fingerprint.source_digest(), fingerprint.__file__)")


def _digest_of_copy(root):
  """tarch's source digest and the imported module's file, in a process that imports `root`."""
  env = dict(os.environ, PYTHONPATH=str(root))
  out = subprocess.run([sys.executable, "-c", _PRINT_DIGEST], cwd=root, env=env, check=True,
                       capture_output=True, text=True).stdout.split()
  return out[0], out[1]


def test_source_digest_follows_the_imported_copy(tmp_path):
  copy = tmp_path / "tarch"
  shutil.copytree(os.path.dirname(tarch.__file__), copy,
                  ignore=shutil.ignore_patterns("__pycache__"))
  digest, module = _digest_of_copy(tmp_path)
  assert module.startswith(str(copy))  # the copy was imported, not the installed tarch
  assert digest == fingerprint.source_digest()  # same files: same digest, wherever they lie
  with open(copy / "child.py", "a") as f:
    f.write("# a comment changes what the package is\n")
  edited, _ = _digest_of_copy(tmp_path)
  assert edited != digest and len(edited) == 64


def test_fingerprint_changes_with_every_input_and_only_with_them():
  config = ml_collections.ConfigDict({"seed": 0, "child": {"num_steps": 10}})
  x = np.arange(6, dtype=np.float32)
  base = fingerprint.fingerprint(config, "names", x)
  assert base == fingerprint.fingerprint(ml_collections.ConfigDict(config.to_dict()), "names",
                                         x.copy())
  assert len(base) == fingerprint.DEFAULT_LENGTH
  other = config.copy_and_resolve_references()
  other.child.num_steps = 11
  variants = [
      fingerprint.fingerprint(other, "names", x),
      fingerprint.fingerprint(config, "name", x),
      fingerprint.fingerprint(config, "names", x + 1),
      fingerprint.fingerprint(config, "names", x.astype(np.float64)),  # dtype
      fingerprint.fingerprint(config, "names", x.reshape(2, 3)),  # shape
      fingerprint.fingerprint(config, "name", "s", x),  # item boundaries
      fingerprint.fingerprint(None, "names", x),
      fingerprint.fingerprint(config, "names", x, package="experiments"),
  ]
  assert len({base, *variants}) == len(variants) + 1
  assert fingerprint.fingerprint({"b": 1, "a": 2}) == fingerprint.fingerprint({"a": 2, "b": 1})


def test_fingerprint_refuses_what_it_cannot_hash_faithfully():
  with pytest.raises(TypeError, match="cannot fingerprint a float"):
    fingerprint.fingerprint(None, 1.5)
  with pytest.raises(TypeError, match="object arrays"):
    fingerprint.fingerprint(None, np.array(["a", None], dtype=object))
  with pytest.raises(ValueError, match="not an importable package"):
    fingerprint.source_digest("json.decoder")
