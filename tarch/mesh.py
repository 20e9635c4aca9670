"""A one-axis device mesh for batches of independent items, and placing arrays on it.

tarch's large computations are batches of independent items along one leading axis: child
models in `tarch.child.train_models`, folds x seeds x hyperparameters in a sweep. Splitting that
axis over every device needs no communication: each device runs the same compiled program on
its slice. The recipe is jit with sharded inputs:

  from tarch import mesh as mesh_lib
  mesh = mesh_lib.data_mesh()                        # every device, axis "batch"
  per_item = mesh_lib.shard_batch(per_item, mesh)    # leading axis split over the devices
  shared = mesh_lib.replicate(shared, mesh)          # a full copy on every device
  out = jitted_vmapped_fn(shared, per_item)          # outputs come back split the same way

and the leading axis must be a multiple of the device count (`padded_size` rounds a batch up;
the caller pads with dummy items and drops their results). The mesh's axis is of type `Auto`, so
that jit propagates the input shardings through gathers, scans and random-key ops on its own;
with `Explicit` axes every such op would need sharding annotations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXIS = "batch"  # the name of `data_mesh`'s only axis


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh with axis `BATCH_AXIS` ("batch") over `devices` (default: `jax.devices()`).

  Args:
    devices: the devices to split batches over, in order; default every device of the default
      backend.

  Returns:
    A `jax.sharding.Mesh` of shape `(len(devices),)` whose axis is of type `Auto`.
  """
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("data_mesh needs at least one device")
  return jax.make_mesh((len(devices),), (BATCH_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def num_shards(mesh: Mesh) -> int:
  """How many slices `shard_batch` cuts a leading axis into: the size of the mesh's batch axis."""
  return mesh.shape[BATCH_AXIS]


def padded_size(size: int, mesh: Mesh) -> int:
  """`size` rounded up to a multiple of the mesh's device count (what `shard_batch` accepts)."""
  n = num_shards(mesh)
  return -(-size // n) * n


def shard_batch(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of `tree` on `mesh`, its leading axis split over the batch axis.

  Args:
    tree: a pytree of arrays (numpy, JAX, typed PRNG keys) with a common leading axis whose
      length is a multiple of the device count (`padded_size`).
    mesh: a mesh with a `BATCH_AXIS` axis, usually `data_mesh()`.

  Returns:
    The same pytree of `jax.Array`s with sharding `NamedSharding(mesh, P("batch"))`.
  """
  n = num_shards(mesh)
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    shape = getattr(leaf, "shape", ())
    if not shape or shape[0] % n:
      raise ValueError(
          f"shard_batch: leaf {jax.tree_util.keystr(path) or '(root)'} of shape {tuple(shape)} "
          f"has no leading axis divisible by the {n} devices; pad it to padded_size()")
  return jax.device_put(tree, NamedSharding(mesh, P(BATCH_AXIS)))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a full copy of every leaf of `tree` on each device of `mesh` (data every item
  reads); a no-op for arrays already placed so."""
  return jax.device_put(tree, NamedSharding(mesh, P()))
