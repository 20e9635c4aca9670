"""The end-to-end demo: generate, hold out a task, infer, train for real, compare."""

import json
import os

from experiments import demo
from experiments.configs import loto


def test_demo_end_to_end(tmp_path, capsys, tiny_offline_config):
  config = tiny_offline_config()
  summary = demo.run(config, str(tmp_path), seeds=1, random_repeats=2,
                     value_config=loto.get_config("tiny"))
  with open(tmp_path / "demo_summary.json") as f:
    assert json.load(f) == json.loads(json.dumps(summary))
  assert set(summary["methods"]) == {"tarch", "best_on_average", "random_1", "random_10"}
  for method in summary["methods"].values():
    assert 0.0 <= method["test_accuracy"] <= 1.0
  assert summary["methods"]["random_10"]["architectures_trained"] == 10
  assert set(summary["stage_seconds"]) == {"generate_or_reuse", "meta_train", "infer",
                                           "train_candidates"}
  out = capsys.readouterr().out
  assert "tarch" in out and "stage wall time" in out
  assert os.path.isdir(tmp_path / "meta_dataset")
