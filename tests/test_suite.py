"""benchmarks/suite.py's pure parts: config overrides and the paired comparison of two runs."""

import importlib.util
import os

import pandas as pd
import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def suite():
  spec = importlib.util.spec_from_file_location(
      "suite", os.path.join(_ROOT, "benchmarks", "suite.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_set_overrides_fields_with_literals_and_strings(suite):
  config = suite.suite_config("", ["value_net.task_interactions=True", "train.top_weight=3.0",
                                   "train.loss=mse"])
  assert config.value_net.task_interactions is True
  assert config.train.top_weight == 3.0 and config.train.loss == "mse"
  assert suite.suite_config("").value_net.task_interactions is False


@pytest.mark.parametrize("setting", ["train.no_such_field=1", "nogroup.seed=1",
                                     "train.top_weight", "top_weight=1"])
def test_set_names_a_bad_override(suite, setting):
  with pytest.raises(SystemExit, match="group.field=value"):
    suite.suite_config("", [setting])


def test_paired_difference_averages_seeds_then_pairs_tasks(suite, tmp_path):
  def rows(values):  # {(task, seed): regret} of tarch on meta-dataset "m"
    return pd.DataFrame([{"task": t, "method": "tarch", "seed": s, "normalized_regret": v,
                          "meta_dataset": "m"} for (t, s), v in values.items()])
  other = rows({("a", 0): 0.5, ("a", 1): 0.7, ("b", 0): 0.2, ("b", 1): 0.2})
  other = pd.concat([other, rows({("a", 0): 9.0}).assign(method="best_on_average")])
  other.to_csv(tmp_path / "other.csv", index=False)
  here = rows({("a", 0): 0.4, ("a", 1): 0.4, ("b", 0): 0.3, ("b", 1): 0.3, ("c", 0): 1.0})
  line = suite.paired_to(str(tmp_path / "other.csv"), here, "m")
  # Per task: a 0.4 - 0.6 = -0.2, b 0.3 - 0.2 = +0.1 (c is not in the other run): mean -0.05,
  # standard error std([-0.2, 0.1]) / sqrt(2) = 0.15.
  assert line == ("m: tarch - compared tarch -0.050 +- 0.150 over 2 tasks "
                  "(lower on 1, higher on 1)")
  assert suite.paired_to(str(tmp_path / "other.csv"), here, "n") == (
      f"n: not in {tmp_path / 'other.csv'}")
