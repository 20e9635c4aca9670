"""NAS-Bench-Graph (Qin et al., NeurIPS 2022) converted to the tarch meta-dataset format.

The PyPI package `nas-bench-graph` ships, per dataset, a pickled dict from an architecture hash to
its results (`valid_perf`, `perf` = test performance, `latency`, `para` = parameters in millions).
The hash is a 5-digit decimal number: the first digit indexes the link structure (9 macro
structures of 4 computing nodes), the other four index the operation of each node in the
package's 9-op list. We read the files directly (the package's own modules are not imported: one
of them imports torch) and write `space.json`, `runs.parquet` and `tasks.csv`.

The `proteins` dataset was only run with 5 operations (2,021 architectures) and is scored by
ROC-AUC; every other dataset has all 26,206 architectures and accuracy. Nothing here special-cases
that: each task's candidate pool is simply the set of architectures present in its rows.
"""

from __future__ import annotations

import importlib.util
import math
import os
import pickle

import numpy as np
import pandas as pd

from tarch import runs as runs_lib
from tarch.space import Categorical, Space

# Link structures and operations in the package's index order (`architecture.py` of the package).
LINKS = ("0000", "0001", "0011", "0012", "0013", "0111", "0112", "0122", "0123")
OPS = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
NUM_NODES = 4
DATASETS = (
    "cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")

# Public graph statistics: (nodes, undirected edges, node-feature dimension, classes or binary
# targets). Planetoid, Coauthor and Amazon numbers as listed by PyTorch Geometric's dataset docs
# (directed edge counts halved); ogbn-arxiv and ogbn-proteins from the OGB paper (Hu et al., 2020).
GRAPH_STATS = {
    "cora": (2708, 5278, 1433, 7),
    "citeseer": (3327, 4552, 3703, 6),
    "pubmed": (19717, 44324, 500, 3),
    "cs": (18333, 81894, 6805, 15),
    "physics": (34493, 247962, 8415, 5),
    "photo": (7650, 119081, 745, 8),
    "computers": (13752, 245861, 767, 10),
    "arxiv": (169343, 1166243, 128, 40),
    "proteins": (132534, 39561252, 8, 112),
}
COSTS = ("latency", "params")


def space() -> Space:
  """The benchmark's search space: a link structure and one operation per computing node."""
  choices = [Categorical("link", LINKS)]
  choices += [Categorical(f"op_{i}", OPS) for i in range(NUM_NODES)]
  return Space("nasbench_graph", tuple(choices))


def package_dir() -> str:
  """Directory holding the `.bench` files of the installed `nas-bench-graph` package."""
  spec = importlib.util.find_spec("nas_bench_graph")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        "the 'nas-bench-graph' package is not installed: pip install nas-bench-graph==1.4.0")
  return os.path.join(next(iter(spec.submodule_search_locations)), "light")


def task_features() -> pd.DataFrame:
  """tasks.csv rows: log sizes and average degree of each graph dataset."""
  rows = []
  for name in DATASETS:
    nodes, edges, feats, classes = GRAPH_STATS[name]
    rows.append({
        "task": name,
        "log_nodes": math.log(nodes),
        "log_edges": math.log(edges),
        "log_features": math.log(feats),
        "log_classes": math.log(classes),
        "log_avg_degree": math.log(2 * edges / nodes),
    })
  return pd.DataFrame(rows)


def runs_frame(bench_dir: str | None = None, cost: str = "latency") -> pd.DataFrame:
  """runs rows of all datasets: one per (dataset, architecture)."""
  if cost not in COSTS:
    raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
  bench_dir = bench_dir or package_dir()
  frames = []
  for name in DATASETS:
    path = os.path.join(bench_dir, f"{name}.bench")
    with open(path, "rb") as f:
      bench = pickle.load(f)  # A dict shipped by the benchmark package itself.
    hashes = np.fromiter(bench.keys(), dtype=np.int64)
    digits = np.array([list(f"{h:05d}") for h in hashes]).astype(np.int64)
    frame = {"task": name, "link": np.asarray(LINKS)[digits[:, 0]]}
    for i in range(NUM_NODES):
      frame[f"op_{i}"] = np.asarray(OPS)[digits[:, 1 + i]]
    values = list(bench.values())
    frame["score"] = np.array([v["valid_perf"] for v in values], dtype=np.float64)
    frame["test_score"] = np.array([v["perf"] for v in values], dtype=np.float64)
    key = "latency" if cost == "latency" else "para"
    frame["cost"] = np.array([v[key] for v in values], dtype=np.float64)
    frames.append(pd.DataFrame(frame))
  return pd.concat(frames, ignore_index=True)


def convert(out_dir: str, cost: str = "latency", bench_dir: str | None = None) -> str:
  """Writes the benchmark as a meta-dataset directory; returns `out_dir`."""
  runs_lib.write_meta_dataset(
      out_dir, space(), runs_frame(bench_dir, cost), task_features(), runs_format="parquet")
  return out_dir
