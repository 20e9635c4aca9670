"""Few-shot search simulations (tarch.fewshot) and their binary (experiments.fewshot)."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from experiments import fewshot as fewshot_binary
from experiments.configs.fewshot import get_config
from experiments.configs.loto import library_configs
from tarch import fewshot, metrics, simulate, sweep
from tarch import mesh as mesh_lib


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, synthetic_dir):
  workdir = str(tmp_path_factory.mktemp("fewshot"))
  summary = fewshot_binary.run(get_config("tiny"), workdir, data_dir=synthetic_dir)
  return workdir, synthetic_dir, summary


def _batch_inputs(ds, config, data_edit=None):
  """The inputs of the binary's compiled batch (same shapes and placement: no recompile)."""
  prog, static = fewshot_binary.program(ds, config)
  _, train, infer_config = library_configs(config)
  tasks = list(range(ds.num_tasks))
  dyn = [prog.split(*sweep.point_configs(train, infer_config, {}, 0))[1] for _ in tasks]
  dyn = jax.tree.map(lambda *x: jnp.stack(x), *dyn)
  mesh = mesh_lib.data_mesh(jax.local_devices())
  data = simulate.Data.build(ds, train.target)
  if data_edit is not None:
    data = data_edit(data)
  return prog, static, mesh_lib.shard_batch(dyn, mesh), mesh_lib.replicate(data, mesh), (
      mesh_lib.shard_batch(jnp.asarray(tasks, jnp.int32), mesh))


def _simulate(ds, config, data_edit=None):
  prog, static, dyn, data, task_N = _batch_inputs(ds, config, data_edit)
  return jax.device_get(prog.batch(static, dyn, data, task_N))


def test_outputs_have_the_documented_form_and_a_rerun_resumes(run_dir, synthetic_ds, capsys):
  workdir, data_dir, summary = run_dir
  with open(os.path.join(workdir, "fewshot_summary.json")) as f:
    assert json.load(f) == summary
  assert set(summary) == {"methods"}
  assert set(summary["methods"]) == set(fewshot.METHODS) | {"random"}
  for stats in summary["methods"].values():
    assert set(stats) == {"regret_at", "num_tasks"}
    assert list(stats["regret_at"]) == ["1", "3", "5"]  # the tiny budget is 6
    assert stats["num_tasks"] == synthetic_ds.num_tasks
    assert all(0 <= v < 10 for v in stats["regret_at"].values())
  results = pd.read_csv(os.path.join(workdir, "fewshot_results.csv"))
  assert list(results.columns) == ["seed", "task", "method", "budget", "architecture",
                                   "test_score", "normalized_regret"]
  assert len(results) == synthetic_ds.num_tasks * (len(fewshot.METHODS) + 1) * 6
  assert os.path.getsize(os.path.join(workdir, "fewshot_regret.png")) > 1000
  # More trainings never make the kept architecture worse by validation, so regret may rise
  # only where validation and test disagree; with the whole pool trained it is the validation
  # oracle's. Here: the regret at budget 1 of random search is that of a random pick.
  for task in range(synthetic_ds.num_tasks):
    rows = synthetic_ds.task_rows(task)
    expected = metrics.random_k_expected(synthetic_ds.score_R[rows],
                                         synthetic_ds.test_score_R[rows], 1)
    got = results[(results.method == "random") & (results.budget == 1)
                  & (results.task == synthetic_ds.task_names[task])]
    np.testing.assert_allclose(got.normalized_regret, expected["normalized_regret"])
  capsys.readouterr()
  again = fewshot_binary.run(get_config("tiny"), workdir, data_dir=data_dir)
  assert "reusing 6 of 6 simulations" in capsys.readouterr().out
  assert again == summary
  # Other refinement settings are other simulations, never the stored ones.
  other = get_config("tiny")
  other.refine.prior_strength = 100.0
  fewshot_binary.run(other, workdir, data_dir=data_dir)
  assert "reusing" not in capsys.readouterr().out


def test_methods_see_validation_scores_only(synthetic_ds):
  """The searches are the same whatever the held-out tasks' test scores, and whatever a
  held-out task's own percentiles in the table (which only training tasks may inform)."""
  config = get_config("tiny")
  base = _simulate(synthetic_ds, config)
  noise = np.random.default_rng(0).uniform(-1, 0, synthetic_ds.num_tasks * synthetic_ds.num_archs)

  def new_tests(data):
    return data.replace(test_TxA=jnp.asarray(noise.reshape(data.test_TxA.shape), jnp.float32))

  other = _simulate(synthetic_ds, config, new_tests)
  np.testing.assert_array_equal(base.trained_KxN, other.trained_KxN)
  assert not np.allclose(base.regret_KxN, other.regret_KxN)

  def scramble_own_row(data):
    pct = data.table.pct_TxA.at[0].set(jnp.asarray(noise[:data.table.pct_TxA.shape[1]] + 1))
    return data.replace(table=data.table.replace(pct_TxA=pct))

  scrambled = _simulate(synthetic_ds, config, scramble_own_row)
  np.testing.assert_array_equal(base.trained_KxN[0], scrambled.trained_KxN[0])  # task 0's


def test_kept_architectures_and_regrets_follow_the_protocol(synthetic_ds):
  result = _simulate(synthetic_ds, get_config("tiny"))
  ds = synthetic_ds
  k = {m: i for i, m in enumerate(fewshot.METHODS)}
  for task in range(ds.num_tasks):
    rows = ds.task_rows(task)
    score_of = dict(zip(ds.arch_R[rows].tolist(), ds.score_R[rows].tolist()))
    test_of = dict(zip(ds.arch_R[rows].tolist(), ds.test_score_R[rows].tolist()))
    trained, kept = result.trained_KxN[task], result.kept_KxN[task]  # [K, N]
    for m in range(len(fewshot.METHODS)):
      assert set(trained[m].tolist()) <= set(score_of)  # pool members only
      assert len(set(trained[m].tolist())) == len(trained[m])  # never the same one twice
      for b in range(trained.shape[1]):
        prefix = trained[m, :b + 1].tolist()
        assert score_of[int(kept[m, b])] == max(score_of[a] for a in prefix)
        np.testing.assert_allclose(
            result.regret_KxN[task, m, b], metrics.normalized_regret(test_of[int(kept[m, b])], ds.test_score_R[rows]),
            rtol=1e-4, atol=1e-5)
    # The zero-shot pick starts both tarch searches; the table's best on average starts the
    # transfer baselines (no observations yet).
    assert trained[k["tarch"], 0] == trained[k["tarch_zero_shot"], 0]
    assert trained[k["best_on_average"], 0] == trained[k["rgpe"], 0] == (
        trained[k["rank_weighted"], 0])


def test_refinement_variants_search_on_the_same_fold(run_dir, synthetic_dir, tmp_path, capsys):
  """A variant is tarch's search with its settings: the base values reproduce tarch, others
  reproduce a run with those settings, the other methods are unchanged, and the binary reports
  the variants as methods."""
  config = get_config("tiny")
  config.refine_grid.improvement = "0.5,0"
  summary = fewshot_binary.run(config, str(tmp_path / "grid"), data_dir=synthetic_dir)
  names = ["tarch[improvement=0.5]", "tarch[improvement=0]"]
  assert list(summary["methods"]) == [*run_dir[2]["methods"], *names]
  for method, stats in run_dir[2]["methods"].items():
    assert summary["methods"][method] == stats, method
  assert summary["methods"][names[0]] == summary["methods"]["tarch"]
  out = capsys.readouterr().out
  assert "tarch minus each method, paired per task" in out
  assert re.search(r"^tarch\[improvement=0\.5\](\s+\+0\.000 \+- 0\.000){3}$", out, re.M), out

  other = get_config("tiny")
  other.refine.improvement = 0.0
  alone = fewshot_binary.run(other, str(tmp_path / "other"), data_dir=synthetic_dir)
  assert summary["methods"][names[1]] == alone["methods"]["tarch"]
  assert summary["methods"][names[1]] != summary["methods"]["tarch"]


@pytest.mark.parametrize("grid, message", [
    ({"power": "2,x"}, "refine_grid.power: expected comma-separated numbers"),
    ({"power": "2,2"}, "listed twice"),
    ({"power": "-1"}, "refine_grid: power=-1: invalid RefineConfig"),
    ({"window": "3"}, "cannot vary ['window']"),
])
def test_bad_refinement_grids_are_refused(grid, message):
  from experiments.configs.fewshot import refine_variants
  config = get_config("tiny")
  with config.unlocked():
    config.refine_grid.update(grid)
  with pytest.raises(ValueError, match=re.escape(message)):
    refine_variants(config)


def test_paired_differences_are_per_task_means_with_standard_errors():
  from tarch import report
  rows = [dict(seed=s, task=t, method=m, budget=b, normalized_regret=v)
          for s in (0, 1) for b in (1, 3)
          for t, (a, c) in {"x": (0.2, 0.4), "y": (0.5, 0.5), "z": (0.1, 0.4)}.items()
          for m, v in (("tarch", a + 0.1 * s), ("rank_weighted", c + 0.1 * s))]
  table = report.fewshot_paired(pd.DataFrame(rows))
  d = np.array([-0.2, 0.0, -0.3])
  expected = f"{d.mean():+.3f} +- {d.std(ddof=1) / np.sqrt(3):.3f}"
  assert table.loc["rank_weighted", 1] == table.loc["rank_weighted", 3] == expected
  with pytest.raises(ValueError, match="no few-shot rows of method 'gp_bo'"):
    report.fewshot_paired(pd.DataFrame(rows), base="gp_bo")
