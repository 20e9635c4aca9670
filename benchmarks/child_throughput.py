"""Batched child-model training against loops that train the same models one at a time.

  python benchmarks/child_throughput.py [--models 256] [--loop_models 24]

Samples `--models` architectures of the default MLP family (`tarch.child.ChildConfig`) on the
offline default tasks. Every variant runs the same steps and batch size per model.

- batched: `tarch.child.train_models` on the models grouped by padded width, one vmapped program
  per group, compiled before timing: what `experiments.generate` runs for each full batch (its
  `child.train_batch` also pads a group's last, partial batch to a power of two of models, which
  with only `--models` models would dominate the timing).
- plain loop: the first `--loop_models` models one at a time, each built at its own shapes (its
  depth and width, no padding) with a per-model jitted `init_state`, `train_step` (one call per
  step) and `evaluate`; a new shape compiles anew, as it would in a plain loop, and that time
  counts.
- compiled-once loop: the same models one at a time, but at the batched program's padded shapes,
  so one compile per padded width serves every model (compiled before timing): the best a loop
  can do with tarch's masks; its accuracies are checked against the batched ones.

Prints models/s of each and both ratios; the last line is `batched_vs_loop_speedup=<number>`,
batched over the plain loop.
"""

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from tarch import child
from tarch import tasks as tasks_lib


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", type=int, default=256)
  parser.add_argument("--loop_models", type=int, default=24)
  parser.add_argument("--max_width", type=int, default=child.ChildConfig.max_width)
  parser.add_argument("--batch_models", type=int, default=256)
  args = parser.parse_args()
  config = child.ChildConfig(max_width=args.max_width)
  padded = tasks_lib.pad_tasks(tasks_lib.offline_tasks(num_tasks=48, seed=0))
  data = child.task_data(padded)
  archs = config.space.decode_many(np.asarray(config.space.sample(jax.random.key(0),
                                                                  args.models)))
  hp = child.hyperparams(archs)
  task = np.arange(args.models) % len(padded.names)
  keys = jax.random.split(jax.random.key(1), args.models)
  plan = child.batch_plan(config, hp.width, args.batch_models)
  pick = lambda tree, idx: jax.tree.map(lambda a: a[idx], tree)
  print(f"device: {jax.devices()[0].device_kind}; {args.models} models of the MLP family "
        f"(max width {config.max_width}, {config.num_steps} steps of {config.batch_size} rows); "
        f"padded widths {[w for w, _ in plan]}")

  def batched():
    out = np.zeros(args.models, np.float32)
    for width, members in plan:
      result = child.train_models(config, data, pick(hp, members), task[members], keys[members],
                                  padded_width=width)
      out[members] = np.asarray(result.val_accuracy)
    return out

  init = jax.jit(child.init_state, static_argnums=(0, 1))
  step = jax.jit(child.train_step, static_argnums=0)
  evaluate = jax.jit(child.evaluate, static_argnums=0)
  padded_width = {int(m): w for w, members in plan for m in members}

  def loop(models, exact_shapes):
    out = []
    for m in models:
      hp_m, cfg, width = pick(hp, m), config, padded_width[m]
      if exact_shapes:  # the model at its own shapes: max_layers = its depth, no padding
        width = int(hp.width[m])
        cfg = dataclasses.replace(config, max_layers=int(hp.num_layers[m]), max_width=width,
                                  min_width=min(width, config.min_width))
      state = init(cfg, width, data, hp_m, task[m], keys[m])
      for t in range(cfg.num_steps):
        state, _ = step(cfg, data, hp_m, task[m], state, jnp.int32(t))
      out.append(float(evaluate(cfg, data, hp_m, task[m], state.params)[0]))
    return np.array(out, np.float32)

  loop_models = list(range(min(args.loop_models, args.models)))
  loop([members[0] for _, members in plan], exact_shapes=False)  # compile each padded width
  batched()
  timings = {}
  for name, fn in (("batched", batched),
                   ("plain loop", lambda: loop(loop_models, exact_shapes=True)),
                   ("compiled-once loop", lambda: loop(loop_models, exact_shapes=False))):
    start = time.perf_counter()
    acc = fn()
    timings[name] = time.perf_counter() - start
    if name == "batched":
      batched_acc = acc
    elif name == "compiled-once loop":
      diff = np.abs(acc - batched_acc[loop_models])
      print(f"compiled-once loop vs batched: validation accuracies equal for "
            f"{np.mean(diff < 1e-6):.0%} of {len(loop_models)} models, largest difference "
            f"{diff.max():.3f} (float rounding of batched vs single matrix products, which "
            f"training at high learning rates can amplify)")
  rate = {name: (args.models if name == "batched" else len(loop_models)) / seconds
          for name, seconds in timings.items()}
  for name, seconds in timings.items():
    print(f"{name:>18}: {rate[name]:7.2f} models/s ({seconds:.1f} s)")
  print(f"batched_vs_compiled_once_loop_speedup={rate['batched'] / rate['compiled-once loop']:.1f}")
  print(f"batched_vs_loop_speedup={rate['batched'] / rate['plain loop']:.1f}")

if __name__ == "__main__":
  main()
