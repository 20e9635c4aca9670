"""Adapters that convert published benchmark tables to the tarch meta-dataset format.

`BENCHMARKS` maps each built-in benchmark's name to its converter (a function writing a
meta-dataset directory); `prepare` converts one into a workdir once, atomically.
"""

from __future__ import annotations

import logging
import os
import tempfile

from tarch.adapters import nasbench_graph

BENCHMARKS = {"nasbench_graph": nasbench_graph.convert}


def prepare(workdir: str, data_dir: str | None, benchmark: str | None) -> str:
  """The meta-dataset directory to use: `data_dir`, or `benchmark` converted into
  `workdir/meta_dataset` (on first use; in a temporary directory renamed into place once
  complete, so a killed conversion never leaves a half-written meta-dataset behind)."""
  if (data_dir is None) == (benchmark is None):
    raise ValueError("give exactly one of --data_dir and --benchmark")
  if data_dir is not None:
    return data_dir
  if benchmark not in BENCHMARKS:
    raise ValueError(f"unknown benchmark {benchmark!r}; valid: {sorted(BENCHMARKS)}")
  out = os.path.join(workdir, "meta_dataset")
  if not os.path.isdir(out):
    logging.info("converting benchmark %s into %s", benchmark, out)
    os.makedirs(workdir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".meta_dataset.", dir=workdir)
    BENCHMARKS[benchmark](tmp)
    os.replace(tmp, out)
  return out
