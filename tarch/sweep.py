"""Sweeps: many task simulations as one vmapped batch axis, sharded over every device.

A sweep is held-out tasks x seeds x values of dynamic hyperparameters (`Spec`). Each
combination is one simulation (`tarch.simulate.simulate`); `run` lays them on one batch axis,
cuts it into chunks that fit device memory, and runs each chunk as one `jax.vmap`ped,
jit-compiled program whose batch axis is sharded over a 1-D `jax.sharding.Mesh` of all devices
(inputs placed with `NamedSharding`; the computation follows them). Chunks are padded to one
shape, so the whole sweep compiles once. Every finished chunk is written atomically to the
store directory, keyed by each simulation's identity (task, seed, every dynamic value) and by a
fingerprint of what else its result depends on (the static config, the data and the source of
the package: `tarch.fingerprint`), so a rerun, or a larger sweep that contains it, reuses what
is done. On several hosts each process runs its share of the chunks on its own devices and
writes its own chunk files.

Sweepable hyperparameters (`SWEEPABLE`): the dynamic fields of `TrainConfig` under their own
names (V's `learning_rate`, `weight_decay`, ...) and those of `InferConfig` prefixed `infer_`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from tarch import atomic, fingerprint, simulate
from tarch import mesh as mesh_lib
from tarch import runs as runs_lib
from tarch.infer import InferConfig
from tarch.meta_train import TrainConfig

SWEEPABLE = tuple(n for n in TrainConfig.DYNAMIC if n != "seed") + tuple(
    f"infer_{n}" for n in InferConfig.DYNAMIC)


@dataclasses.dataclass(frozen=True)
class Spec:
  """What to simulate: every held-out task x seed x combination of hyperparameter values."""

  tasks: tuple[int, ...]  # held-out task indices
  seeds: tuple[int, ...] = (0,)
  grid: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (name in SWEEPABLE, values)

  def __post_init__(self):
    unknown = [n for n, _ in self.grid if n not in SWEEPABLE]
    if unknown:
      raise ValueError(f"cannot sweep {unknown}: sweepable hyperparameters are {list(SWEEPABLE)}"
                       " (the others fix shapes or the program's structure)")
    repeated = [name for name, values in (("tasks", self.tasks), ("seeds", self.seeds),
                                           *self.grid) if len(set(values)) != len(values)]
    if repeated:
      raise ValueError(f"a sweep lists each value once; repeated in {repeated}")
    empty = [n for n, values in self.grid if not values]
    if not self.tasks or not self.seeds or empty:
      raise ValueError(f"a sweep needs at least one task, seed and value of each swept "
                       f"hyperparameter (empty: {empty or 'tasks or seeds'})")

  def configs(self) -> list[dict[str, float]]:
    """Every combination of the grid's values, in grid order."""
    names = [n for n, _ in self.grid]
    return [dict(zip(names, values))
            for values in itertools.product(*[v for _, v in self.grid])]

  def simulations(self) -> list[tuple[dict[str, float], int, int]]:
    """(config, seed, task) of every simulation: configs outermost, tasks innermost."""
    return [(c, s, t) for c in self.configs() for s in self.seeds for t in self.tasks]


def point_configs(train: TrainConfig, infer_config: InferConfig, config: dict[str, float],
                    seed: int) -> tuple[TrainConfig, InferConfig]:
  """`train` and `infer_config` with one sweep point's values (validated by the dataclasses)."""
  train_values = {n: v for n, v in config.items() if not n.startswith("infer_")}
  infer_values = {n.removeprefix("infer_"): v for n, v in config.items()
                  if n.startswith("infer_")}
  return (dataclasses.replace(train, seed=int(seed), **train_values),
          dataclasses.replace(infer_config, **infer_values))


# Simulations per device in one compiled call when the caller does not bound it. On CPU a
# training step's cost per simulation grows once a batch holds more than a few simulations, and
# each chunk trains until its own slowest simulation stops early, so small chunks are faster
# there (`benchmarks/sweep_speed.py`, BUILD_NOTES "Sweeps"); accelerators amortise each step
# over a wide batch (not measured: none was lent).
CPU_CHUNK_PER_DEVICE = 3
ACCELERATOR_CHUNK_PER_DEVICE = 16


def default_chunk_size(mesh: Mesh) -> int:
  """The chunk size `run` uses for `chunk_size=0`: a few simulations per CPU device, many per
  accelerator."""
  platform = mesh.devices.flat[0].platform
  per_device = CPU_CHUNK_PER_DEVICE if platform == "cpu" else ACCELERATOR_CHUNK_PER_DEVICE
  return per_device * mesh_lib.num_shards(mesh)


def _chunks(n: int, chunk_size: int) -> list[range]:
  """`n` simulations in balanced chunks of at most `chunk_size`."""
  if n == 0:
    return []
  count = -(-n // max(chunk_size, 1))
  size = -(-n // count)
  return [range(i, min(i + size, n)) for i in range(0, n, size)]


def sim_key(task_name: str, seed: int, train: TrainConfig, infer_config: InferConfig) -> str:
  """A simulation's identity: its task, seed and every dynamic hyperparameter's value."""
  values = {n: getattr(train, n) for n in TrainConfig.DYNAMIC}
  values.update({f"infer_{n}": getattr(infer_config, n) for n in InferConfig.DYNAMIC})
  return json.dumps({"task": task_name, "seed": int(seed), **{
      k: float(v) for k, v in values.items() if k != "seed"}}, sort_keys=True)


@dataclasses.dataclass(frozen=True)
class Program:
  """What each simulation of a sweep computes: a batched, jit-compiled simulation function and
  how a sweep point's configs become its (static, dynamic) arguments."""

  name: str  # part of the store's fingerprint: programs never reuse each other's results
  split: Callable[[TrainConfig, InferConfig], tuple]  # a point's (static, dyn)
  batch: Callable  # (static, dyn with a leading axis, data, task_N) -> result with one too
  result_type: type  # the result's flax.struct class
  settings: str = ""  # every setting the program fixes for all points that neither the static
  # part nor a point's key holds (e.g. traced values the sweep does not vary): part of the
  # fingerprint, so that a rerun with other settings never reuses these results


def jit_batch(batch: Callable) -> Callable:
  """A batched simulation function compiled with its static part (first argument) static."""
  return jax.jit(batch, static_argnums=0)


_BATCH = jit_batch(simulate.simulate_batch)


def loto_program(ds: runs_lib.MetaDataset, static: simulate.Static) -> Program:
  """The leave-one-task-out fold of `tarch.simulate` (LOTO and `experiments.sweep`)."""
  return Program(name="loto", split=lambda tc, ic: simulate.split(ds.space, static.value_net,
                                                                  tc, ic),
                 batch=_BATCH, result_type=simulate.Result)


@dataclasses.dataclass
class Outcome:
  """One finished simulation."""

  config: dict[str, float]  # the swept values
  seed: int
  task: int
  result: simulate.Result  # host arrays (the program's result type)


def _load_store(store: str, fp: str) -> dict[str, dict]:
  """Finished simulations in the store with fingerprint `fp`: sim key -> result fields."""
  done = {}
  if not os.path.isdir(store):
    return done
  for name in sorted(os.listdir(store)):
    if not name.endswith(".json"):
      continue
    try:
      with open(os.path.join(store, name)) as f:
        chunk = json.load(f)
      if not isinstance(chunk, dict) or chunk.get("fingerprint") != fp:
        continue
      for sim in chunk["simulations"]:
        done[sim["key"]] = sim["result"]
    except (OSError, ValueError, KeyError, TypeError):
      continue  # unreadable (a foreign file): recomputed, never trusted
  return done


def _to_json(result_np, i: int) -> dict:
  """Simulation `i` of a host result, strict-JSON-ready: non-finite floats as the strings
  "inf", "-inf" and "nan" (which `_from_json` reads back)."""
  def plain(x):
    if isinstance(x, list):
      return [plain(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
      return str(x)
    return x

  return {field.name: plain(np.asarray(getattr(result_np, field.name))[i].tolist())
          for field in dataclasses.fields(result_np)}


def _from_json(fields: dict, result_type=simulate.Result):
  def number(v):
    if isinstance(v, list):
      return [number(x) for x in v]
    return float(v) if isinstance(v, str) else v
  return result_type(**{k: np.asarray(number(v)) for k, v in fields.items()})


def run(ds: runs_lib.MetaDataset, static: simulate.Static, train: TrainConfig,
        infer_config: InferConfig, spec: Spec, store: str, chunk_size: int = 0,
        mesh: Mesh | None = None, progress: Callable[[str], None] | None = print,
        process_index: int = 0, process_count: int = 1, groups=None,
        program: Program | None = None) -> list[Outcome]:
  """Runs (or resumes) every simulation of `spec`; returns them in `spec.simulations()` order.

  Args:
    ds: the meta-dataset.
    static: the static part of the simulation (the program's `split` of `train` and
      `infer_config`).
    train, infer_config: the full configs whose dynamic values the sweep points replace.
    spec: the sweep.
    store: directory of finished chunks (created).
    chunk_size: simulations per compiled call, at most (memory bound); chunks are balanced and
      padded to one shape, a multiple of the mesh's device count. 0: `default_chunk_size`.
    mesh: the 1-D "batch" mesh to shard over (`tarch.mesh.data_mesh`; default: every local
      device).
    progress: called with a line after each chunk (simulations done, simulations/s, ETA).
    process_index, process_count: on several hosts, this process runs chunks i with
      i % process_count == process_index (and returns only what is in the store).
    groups: optional group of each task (`simulate.Data.build`): a held-out task's whole group
      is left out of training. Default: leave-one-task-out.
    program: what each simulation computes (default `loto_program`; `static` must be what its
      `split` gives every point).
  """
  program = loto_program(ds, static) if program is None else program
  sims = spec.simulations()
  configs = [point_configs(train, infer_config, c, s) for c, s, _ in sims]  # validated
  keys = [sim_key(ds.task_names[t], s, tc, ic) for (c, s, t), (tc, ic) in zip(sims, configs)]
  for tc, ic in configs:  # every point must share the static part (one compiled program)
    if program.split(tc, ic)[0] != static:
      raise ValueError("sweep points differ in static settings")
  mesh = mesh_lib.data_mesh(jax.local_devices()) if mesh is None else mesh
  chunk_size = chunk_size or default_chunk_size(mesh)
  os.makedirs(store, exist_ok=True)
  group_T = np.arange(ds.num_tasks) if groups is None else np.asarray(groups)
  fp = fingerprint.fingerprint(None, program.name, program.settings, repr(static),
                               *_data_parts(ds), group_T)
  done = _load_store(store, fp)
  pending = [i for i, k in enumerate(keys) if k not in done]
  chunks = _chunks(len(pending), chunk_size)
  mine = [c for i, c in enumerate(chunks) if i % process_count == process_index]
  if mine:  # the device arrays, only when there is something to run
    data = mesh_lib.replicate(simulate.Data.build(ds, train.target, group_T), mesh)
  # One padded shape for every chunk, a multiple of the device count: one compiled program.
  size = mesh_lib.padded_size(max(len(c) for c in chunks), mesh) if chunks else 0
  start, finished = time.perf_counter(), 0
  if progress is not None and len(pending) < len(keys):
    progress(f"reusing {len(keys) - len(pending)} of {len(keys)} simulations from {store}")
  for chunk in mine:
    index = [pending[i] for i in chunk]
    index += [index[-1]] * (size - len(index))  # padding: repeats, dropped below
    dyn = [program.split(*configs[i])[1] for i in index]
    dyn = jax.tree.map(lambda *x: jnp.stack(x), *dyn)
    task_N = jnp.asarray([sims[i][2] for i in index], jnp.int32)
    result = program.batch(static, mesh_lib.shard_batch(dyn, mesh), data,
                           mesh_lib.shard_batch(task_N, mesh))
    result = jax.device_get(result)
    real = len(chunk)
    records = [{"key": keys[index[j]], "result": _to_json(result, j)} for j in range(real)]
    name = hashlib.sha1("\n".join(r["key"] for r in records).encode()).hexdigest()[:16]
    atomic.atomic_write_json(os.path.join(store, f"chunk-{fp}-{name}.json"),
                             {"fingerprint": fp, "simulations": records})
    for r in records:
      done[r["key"]] = r["result"]
    finished += real
    if progress is not None:
      elapsed = time.perf_counter() - start
      rate = finished / elapsed
      todo = sum(len(c) for c in mine) - finished
      progress(f"[{len(keys) - len(pending) + finished}/{len(keys)}] simulations done, "
               f"{rate:.2f} simulations/s, ETA {todo / rate:.0f}s")
  return [Outcome(config=c, seed=s, task=t, result=_from_json(done[k], program.result_type))
          for (c, s, t), k in zip(sims, keys) if k in done]


def _data_parts(ds: runs_lib.MetaDataset) -> list:
  """What a simulation reads from the meta-dataset."""
  return [json.dumps(ds.space.to_dict(), sort_keys=True), "\n".join(ds.arch_keys),
          "\n".join(ds.task_names), ds.features_TxF, ds.enc_AxE, ds.task_R, ds.arch_R, ds.score_R,
          ds.test_score_R, ds.cost_R]


def compiled_programs() -> int:
  """How many programs the sweep's batched simulation has compiled in this process."""
  return _BATCH._cache_size()
