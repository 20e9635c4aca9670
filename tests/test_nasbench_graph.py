"""The NAS-Bench-Graph adapter reads the package's shipped tables correctly."""

import numpy as np
import pytest

from tarch import runs
from tarch.adapters import nasbench_graph as nbg


def test_hashes_decode_to_the_packages_architectures():
  frame = nbg.runs_frame()
  cora = frame[frame.task == "cora"].reset_index(drop=True)
  # Hash 0 is link structure 0 with op 0 ("gat") everywhere; 85414 is link 8, ops 5, 4, 1, 4.
  first = cora.iloc[0]
  assert (first.link, first.op_0, first.op_3) == ("0000", "gat", "gat")
  assert first.score == pytest.approx(0.7733333333333334)
  proteins = frame[frame.task == "proteins"]
  row = proteins[(proteins.link == "0123") & (proteins.op_0 == "arma") & (proteins.op_1 == "sage")
                 & (proteins.op_2 == "gcn") & (proteins.op_3 == "sage")]
  assert len(row) == 1
  assert row.iloc[0].test_score == pytest.approx(0.7926, abs=1e-4)


@pytest.fixture(scope="module")
def nbg_ds(tmp_path_factory):
  return runs.load_meta_dataset(nbg.convert(str(tmp_path_factory.mktemp("nbg"))))


def test_converted_benchmark(nbg_ds):
  ds = nbg_ds
  assert ds.task_names == nbg.DATASETS
  assert ds.num_archs == 26206
  sizes = {ds.task_names[t]: len(ds.task_rows(t)) for t in range(ds.num_tasks)}
  assert sizes["proteins"] == 2021
  assert all(n == 26206 for name, n in sizes.items() if name != "proteins")
  proteins = ds.task_rows(ds.task_names.index("proteins"))
  ops = {part.split("=")[1] for a in ds.arch_R[proteins] for part in ds.arch_keys[a].split(",")
         if part.startswith("op_")}
  assert ops == {"gcn", "sage", "arma", "fc", "skip"}
  assert np.all((ds.score_R > 0) & (ds.score_R <= 1))
  assert np.all(ds.cost_R > 0)
  assert np.all(ds.num_seeds_R == 1)
  assert ds.feature_names == ("log_nodes", "log_edges", "log_features", "log_classes",
                              "log_avg_degree")


def test_unknown_cost_is_named():
  with pytest.raises(ValueError, match="cost must be one of"):
    nbg.runs_frame(cost="flops")
