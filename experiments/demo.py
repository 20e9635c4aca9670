r"""End to end: from raw data to an architecture inferred for a new task, then trained for real.

  python -m experiments.demo --workdir=DIR [--task=NAME] [--seeds=3] [--random_repeats=5]

1. generate (or reuse) the offline meta-dataset in DIR (`experiments.generate`, same config);
2. hold out one task (`--task`, default the first) and train the value-network ensemble on the
   others (`experiments/configs/loto.py` settings);
3. infer an architecture for the held-out task from its meta-features (`tarch.infer`, no pool:
   the ascent through the value network over the whole continuous space, pulled toward the
   table's architectures, where it has evidence; or, when `meta_train.fit` chose to blend V with
   the training tasks' results (task kernels, best_on_average; `tarch.ranker`), the table's
   architectures ranked by that blend);
4. actually train it on the held-out task, and for comparison train (same family, steps and batch
   size per model): best_on_average (the architecture of the table with the best mean
   percentile over the training tasks), and `--random_repeats` x 10 architectures sampled at
   random: random_1 is the mean over them of a single random pick, random_10 the mean over
   repeats of the pick with the best validation accuracy among 10. Every architecture is trained
   with `--seeds` seeds, its accuracies averaged (`tarch.generation.train_on_task`, batches
   split over every device).

Prints the comparison and the wall time of each stage; writes DIR/demo_summary.json.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments import generate
from experiments.configs import loto as loto_config
from experiments.configs.offline import child_config
from tarch import atomic, baselines, generation, meta_train, tables
from tarch import infer as infer_lib
from tarch import mesh as mesh_lib
from tarch import runs as runs_lib
from tarch import tasks as tasks_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """experiments.generate's --config (the offline config of the meta-dataset to generate or
  reuse) and --workdir, plus the demo's own flags."""
  generate.define_flags()
  flags.DEFINE_string("task", None, "The held-out task (default: the first task).")
  flags.DEFINE_integer("seeds", 3, "Trainings per architecture (accuracies averaged).")
  flags.DEFINE_integer("random_repeats", 5, "Draws of 10 random architectures for random search.")


def run(config, workdir: str, task_name: str | None = None, seeds: int = 3,
        random_repeats: int = 5, value_config=None) -> dict:
  """Runs the demo; returns (and writes) the summary. `value_config` is the LOTO config whose
  value-network, training and inference settings are used (default: its default variant)."""
  if seeds < 1 or random_repeats < 1:
    raise ValueError("--seeds and --random_repeats must be >= 1")
  times = {}
  start = time.perf_counter()
  data_dir = generate.run(config, workdir)
  times["generate_or_reuse"] = time.perf_counter() - start

  ds = runs_lib.load_meta_dataset(data_dir)
  task_name = task_name or ds.task_names[0]
  if task_name not in ds.task_names:
    raise ValueError(f"--task {task_name!r} is not a task of {data_dir}; known: "
                     f"{list(ds.task_names)}")
  task = ds.task_names.index(task_name)
  train_tasks = [t for t in range(ds.num_tasks) if t != task]
  value_config = value_config or loto_config.get_config()
  net, train, infer_config = loto_config.library_configs(value_config)

  start = time.perf_counter()
  model, _ = meta_train.fit(ds, net, train, train_tasks=train_tasks)
  times["meta_train"] = time.perf_counter() - start

  key = jax.random.key(value_config.seed)
  features = jnp.asarray(ds.features_TxF[task], jnp.float32)
  support = ds.enc_AxE  # the architectures the value network was trained on
  infer_lib.infer(model, ds.space, features, key, infer_config, support_SxE=support)  # compile
  start = time.perf_counter()
  inference = infer_lib.infer(model, ds.space, features, key, infer_config, support_SxE=support)
  times["infer"] = time.perf_counter() - start

  boa = int(baselines.best_on_average(tables.PercentileTable.build(ds),
                                     np.isin(np.arange(ds.num_tasks), train_tasks),
                                     np.ones(ds.num_archs, bool)))
  random_enc = ds.space.sample(jax.random.fold_in(key, 1), 10 * random_repeats)
  candidates = {"tarch": [inference.architectures[0]],
                "best_on_average": [ds.space.decode(ds.enc_AxE[boa])],
                "random": ds.space.decode_many(np.asarray(random_enc))}
  all_archs = [a for archs in candidates.values() for a in archs]

  start = time.perf_counter()
  padded = tasks_lib.pad_tasks(generate.build_tasks(config))
  if padded.names != ds.task_names:
    raise ValueError(f"{data_dir} was generated from other tasks than the config builds; "
                     "use the workdir of this config")
  trained = generation.train_on_task(child_config(config), padded, task, all_archs, seeds,
                                     jax.random.fold_in(key, 2), mesh=mesh_lib.data_mesh())
  times["train_candidates"] = time.perf_counter() - start

  r_val = trained["val"][2:].reshape(random_repeats, 10)
  r_test = trained["test"][2:].reshape(random_repeats, 10)
  pick = r_val.argmax(1)
  table = ds.score_R[ds.task_rows(task)]
  rows = [
      {"method": "tarch", "architectures_trained": 1, "val_accuracy": trained["val"][0],
       "test_accuracy": trained["test"][0], "architecture": ds.space.format(all_archs[0])},
      {"method": "best_on_average", "architectures_trained": 1, "val_accuracy": trained["val"][1],
       "test_accuracy": trained["test"][1], "architecture": ds.space.format(all_archs[1])},
      {"method": "random_1", "architectures_trained": 1, "val_accuracy": r_val.mean(),
       "test_accuracy": r_test.mean(), "architecture": f"mean of {r_val.size} random draws"},
      {"method": "random_10", "architectures_trained": 10,
       "val_accuracy": r_val[np.arange(random_repeats), pick].mean(),
       "test_accuracy": r_test[np.arange(random_repeats), pick].mean(),
       "architecture": f"best validation of 10, mean of {random_repeats} draws"},
  ]
  summary = {
      "task": task_name, "data_dir": data_dir, "seeds_per_architecture": seeds,
      "ranker": inference.ranker,
      "child_steps": config.child.num_steps,
      "methods": {r["method"]: {k: (float(v) if k.endswith("accuracy") else v)
                                for k, v in r.items() if k != "method"} for r in rows},
      "failed_trainings": int(trained["failed"].sum()),
      "table_best_val_accuracy_on_task": float(table.max()),
      "table_median_val_accuracy_on_task": float(np.median(table)),
      "stage_seconds": times,
  }
  atomic.atomic_write_json(os.path.join(workdir, "demo_summary.json"), summary)

  print(f"held-out task {task_name}: value network trained on {len(train_tasks)} other tasks, "
        f"tarch ranks by {inference.ranker}; each architecture trained {seeds}x for "
        f"{config.child.num_steps} steps (archs: architectures a method trains on the task)")
  print(f"{'method':<16} {'archs':>5} {'val acc':>8} {'test acc':>8}  architecture")
  for r in rows:
    print(f"{r['method']:<16} {r['architectures_trained']:>5} {r['val_accuracy']:>8.3f} "
          f"{r['test_accuracy']:>8.3f}  {r['architecture']}")
  print("stage wall time: " + ", ".join(f"{k} {v:.2f}s" for k, v in times.items()))
  print(f"wrote {os.path.join(workdir, 'demo_summary.json')}")
  return summary


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  run(FLAGS.config, FLAGS.workdir, FLAGS.task, FLAGS.seeds, FLAGS.random_repeats)


if __name__ == "__main__":
  define_flags()
  app.run(main)
