"""The batch mesh: one axis over every device, leading axes split over it. (Several devices
are exercised by test_generate's subprocess on 4 host devices.)"""

import jax
import numpy as np
import pytest

from tarch import mesh as mesh_lib


def test_shard_batch_splits_the_leading_axis_and_keeps_values():
  mesh = mesh_lib.data_mesh()
  assert mesh.axis_names == (mesh_lib.BATCH_AXIS,) and mesh.size == jax.device_count()
  n = mesh_lib.num_shards(mesh)
  assert [mesh_lib.padded_size(k, mesh) for k in (1, n, n + 1)] == [n, n, 2 * n]
  tree = {"x": np.arange(2 * n * 3).reshape(2 * n, 3), "key": jax.random.split(jax.random.key(0),
                                                                               2 * n)}
  sharded = mesh_lib.shard_batch(tree, mesh)
  assert sharded["x"].sharding.spec == jax.sharding.PartitionSpec(mesh_lib.BATCH_AXIS)
  np.testing.assert_array_equal(sharded["x"], tree["x"])
  assert mesh_lib.replicate(sharded["x"], mesh).sharding.is_fully_replicated


def test_shard_batch_names_a_leaf_without_a_divisible_leading_axis():
  with pytest.raises(ValueError, match=r"\['scale'\] of shape \(\)"):
    mesh_lib.shard_batch({"scale": np.float32(1.0)}, mesh_lib.data_mesh())
