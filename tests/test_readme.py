"""The README's Python API tour, run on a synthetic meta-dataset."""

import jax
import numpy as np

from tarch import infer, meta_train, runs
from tarch.value_net import ValueNetConfig


def test_api_tour(tmp_path, synthetic_dir):
  ds = runs.load_meta_dataset(synthetic_dir)
  model, history = meta_train.fit(
      ds, ValueNetConfig(interaction_hidden=(16,)), meta_train.TrainConfig(num_steps=50, eval_every=25))
  assert history
  meta_train.save(model, tmp_path / "value_model")

  features = ds.features_TxF[0]
  result = infer.infer(model, ds.space, features, jax.random.key(0))
  ds.space.validate(result.architectures[0])
  assert np.isfinite(result.predicted[0])

  near = infer.infer(model, ds.space, features, jax.random.key(0), support_SxE=ds.enc_AxE)
  ds.space.validate(near.architectures[0])

  pool = ds.enc_AxE
  ranked = infer.infer(model, ds.space, features, jax.random.key(0), pool_PxE=pool)
  assert np.all(ranked.pool_indices < len(pool))
