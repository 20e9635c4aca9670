"""The README's Python API tour, run on a synthetic meta-dataset."""

import jax
import numpy as np

from tarch import infer, meta_train, refine, runs
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

  # The few-shot section: the next suggestions after two trainings.
  trained = result.architectures[:2]
  assert len(trained) == 2
  out = refine.refine(model, ds.space, features, trained, [0.71, 0.64], q=4)
  assert len(out.architectures) == 4
  assert not {str(a) for a in out.architectures} & {str(a) for a in trained}
  assert np.all(np.isfinite(out.predicted)) and np.all(out.uncertainty >= 0)
  assert np.isclose(out.value_net_weight + out.task_weights.sum(), 1.0, atol=1e-5)

  # The cost-aware section: the synthetic meta-dataset has a cost column.
  front = infer.infer(model, ds.space, features, jax.random.key(0), cost_weights=[0, 0.5, 1, 2, 4])
  assert len(front.architectures) >= 1 and np.all(np.diff(front.predicted_cost) >= 0)
  budget = float(np.median(ds.cost_R))
  cheap = infer.infer(model, ds.space, features, jax.random.key(0), max_cost=budget)
  assert cheap.predicted_cost[0] <= budget
