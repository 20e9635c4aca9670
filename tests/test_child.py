"""The child-model family: masking is exact, batching changes nothing, one compile per shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tarch import child
from tarch import tasks as tasks_lib

CONFIG = child.ChildConfig(max_layers=3, max_width=16, num_steps=60, batch_size=16)


def _arch(**overrides):
  arch = {"num_layers": 2, "width": 5, "activation": "tanh", "dropout": 0.0,
          "learning_rate": 0.01, "weight_decay": 1e-4}
  arch.update(overrides)
  return arch


def _one(hp, m):
  return jax.tree.map(lambda a: a[m], hp)


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  tasks = []
  for i, (k, d) in enumerate(((2, 3), (3, 5))):
    centres = 4.0 * np.eye(k, d)  # well separated: a working trainer gets ~100%
    y = rng.integers(0, k, 300).astype(np.int32)
    x = (centres[y] + rng.normal(size=(300, d))).astype(np.float32)
    tasks.append(tasks_lib.make_task(f"blobs{i}", "blobs", x, y, range(k), 1.0, 0.0, 0.0, i))
  return child.task_data(tasks_lib.pad_tasks(tasks))


def test_padded_model_computes_the_small_model():
  arch = _arch(num_layers=2, width=5, activation="gelu")
  hp = _one(child.hyperparams([arch]), 0)
  params = child.init_params(CONFIG, jax.random.key(0), 4, 5, num_inputs=6, num_classes=3,
                             padded_width=16)
  x = jax.random.normal(jax.random.key(1), (7, 6)).at[:, 4:].set(0.0)  # 4 real features
  padded = child.forward(CONFIG, params, hp, x)

  h = x[:, :4]
  for layer in params["hidden"][:2]:
    rows = 4 if layer is params["hidden"][0] else 5
    h = jax.nn.gelu(h @ layer["kernel"][:rows, :5] + layer["bias"][:5])
  small = h @ params["out"]["kernel"][:5] + params["out"]["bias"]
  np.testing.assert_allclose(padded, small, rtol=1e-5, atol=1e-6)


def test_padded_weights_get_no_gradient():
  hp = _one(child.hyperparams([_arch(num_layers=2, width=5)]), 0)
  params = child.init_params(CONFIG, jax.random.key(0), 6, 5, num_inputs=6, num_classes=3,
                             padded_width=16)
  x = jax.random.normal(jax.random.key(1), (7, 6))
  grads = jax.grad(lambda p: child.forward(CONFIG, p, hp, x).sum())(params)
  hidden = grads["hidden"]
  assert np.all(np.asarray(hidden[0]["kernel"][:, 5:]) == 0)
  assert np.all(np.asarray(hidden[1]["kernel"][5:]) == 0)
  assert np.all(np.asarray(hidden[1]["kernel"][:, 5:]) == 0)
  assert np.all(np.asarray(hidden[2]["kernel"]) == 0)  # beyond the model's depth
  assert np.all(np.asarray(grads["out"]["kernel"][5:]) == 0)
  assert np.any(np.asarray(hidden[1]["kernel"][:5, :5]) != 0)


def test_models_learn_and_learning_rate_matters(data):
  archs = [_arch(learning_rate=0.03), _arch(learning_rate=1e-4), _arch(learning_rate=0.03)]
  result = child.train_models(CONFIG, data, child.hyperparams(archs), jnp.array([0, 0, 1]),
                              jax.random.split(jax.random.key(0), 3))
  val = np.asarray(result.val_accuracy)
  assert val[0] > 0.9 and val[2] > 0.9
  assert val[1] < val[0]
  assert np.all(np.asarray(result.failed_step) == -1)
  assert np.all(np.isfinite(np.asarray(result.train_loss)))


def test_batch_composition_and_padding_do_not_change_a_result(data):
  archs = [_arch(width=3, dropout=0.3), _arch(width=7, activation="relu"), _arch(width=2)]
  hp, keys = child.hyperparams(archs), jax.random.split(jax.random.key(3), 3)
  task = jnp.array([1, 0, 1])
  together = child.train_models(CONFIG, data, hp, task, keys)
  alone = child.train_models(CONFIG, data, jax.tree.map(lambda a: a[1:2], hp), task[1:2],
                             keys[1:2], padded_width=8)
  np.testing.assert_allclose(together.train_loss[1:2], alone.train_loss, rtol=1e-4)
  np.testing.assert_array_equal(together.val_accuracy[1:2], alone.val_accuracy)
  # With dropout too (model 0): its masks are drawn per unit, not per padded layer.
  narrow = child.train_models(CONFIG, data, jax.tree.map(lambda a: a[:1], hp), task[:1],
                              keys[:1], padded_width=4)
  np.testing.assert_allclose(together.train_loss[:1], narrow.train_loss, rtol=1e-4)
  np.testing.assert_array_equal(together.val_accuracy[:1], narrow.val_accuracy)


def test_one_compile_for_many_batches_of_the_same_shape(data):
  before = child.train_models._cache_size()
  for seed in range(3):
    archs = [_arch(width=int(w), activation=a) for w, a in zip((2, 9, 16), ("relu", "swish",
                                                                             "sigmoid"))]
    archs[seed]["num_layers"] = 1 + seed
    child.train_models(CONFIG, data, child.hyperparams(archs), jnp.array([seed % 2, 1, 0]),
                       jax.random.split(jax.random.key(seed), 3), padded_width=16)
  assert child.train_models._cache_size() == before + 1


def test_non_finite_loss_is_a_failed_run_not_a_crash(data):
  archs = [_arch(learning_rate=1e30), _arch()]
  result = child.train_models(CONFIG, data, child.hyperparams(archs), jnp.array([0, 0]),
                              jax.random.split(jax.random.key(0), 2))
  failed = np.asarray(result.failed_step)
  assert failed[0] >= 0 and failed[1] == -1
  assert np.isfinite(np.asarray(result.val_accuracy)).all()
  assert np.asarray(result.val_accuracy)[1] > 0.9


def test_parameter_count_and_flops():
  hp = child.hyperparams([_arch(num_layers=2, width=5), _arch(num_layers=1, width=4)])
  count = child.parameter_count(hp, num_features=4, num_classes=3)
  np.testing.assert_array_equal(count, [(4 * 5 + 5) + (5 * 5 + 5) + (5 * 3 + 3),
                                        (4 * 4 + 4) + (4 * 3 + 3)])
  flops = child.training_flops(CONFIG, hp, 4, 3)
  assert flops[0] == 6 * (4 * 5 + 5 * 5 + 5 * 3) * CONFIG.batch_size * CONFIG.num_steps


def test_padded_width_is_the_next_power_of_two():
  assert child.padded_width_for(CONFIG, [3, 5]) == 8
  assert child.padded_width_for(CONFIG, [8]) == 8
  assert child.padded_width_for(CONFIG, [9, 1]) == 16
  with pytest.raises(ValueError, match="max_width"):
    child.padded_width_for(CONFIG, [17])


def test_space_round_trips_through_hyperparams():
  space = child.ChildConfig().space
  archs = space.decode_many(np.asarray(space.sample(jax.random.key(0), 50)))
  hp = child.hyperparams(archs)
  assert hp.width.min() >= 8 and hp.width.max() <= 64
  assert set(np.unique(hp.num_layers)) <= {1, 2, 3}
  with pytest.raises(ValueError, match="MLP family"):
    child.hyperparams([_arch(activation="softsign")])


@pytest.mark.parametrize("bad", [{"max_layers": 0}, {"min_width": 9, "max_width": 8},
                                 {"learning_rate": (0.1, 0.01)}, {"max_dropout": 1.0},
                                 {"num_steps": 0}])
def test_config_validation(bad):
  with pytest.raises(ValueError, match="ChildConfig"):
    child.ChildConfig(**bad)


@pytest.mark.parametrize("name, fn", [("relu", jax.nn.relu), ("tanh", jnp.tanh),
                                      ("gelu", jax.nn.gelu), ("swish", jax.nn.swish),
                                      ("sigmoid", jax.nn.sigmoid)])
def test_one_formula_computes_every_activation(name, fn):
  z = jnp.linspace(-6.0, 6.0, 241)
  got = child.activate(child.ACTIVATIONS.index(name), z)
  np.testing.assert_allclose(got, fn(z), atol=2e-6)
  grad = jax.vmap(jax.grad(lambda v: child.activate(child.ACTIVATIONS.index(name), v)))(z)
  np.testing.assert_allclose(grad, jax.vmap(jax.grad(fn))(z), atol=1e-5)


def test_batch_plan_groups_by_padding_and_covers_every_model_once():
  widths = np.array([3, 16, 9, 2, 12, 5, 7, 16])
  plan = child.batch_plan(CONFIG, widths, max_models=2)
  seen = np.concatenate([members for _, members in plan])
  np.testing.assert_array_equal(np.sort(seen), np.arange(len(widths)))
  for padded, members in plan:
    assert 1 <= len(members) <= 2
    assert child.padded_width_for(CONFIG, widths[members]) == padded
  assert [p for p, _ in plan] == sorted(p for p, _ in plan)


def test_train_batch_rejects_models_its_padding_cannot_hold(data):
  hp = child.hyperparams([_arch(width=12), _arch(num_layers=4)])
  keys = jax.random.split(jax.random.key(0), 2)
  with pytest.raises(ValueError, match="padded_width 8"):
    child.train_batch(CONFIG, data, hp, np.zeros(2, int), keys, [0], 8, 4)
  with pytest.raises(ValueError, match="outside 1..3"):
    child.train_batch(CONFIG, data, hp, np.zeros(2, int), keys, [1], 8, 4)
  result = child.train_batch(CONFIG, data, hp, np.zeros(2, int), keys, [0], 16, 4)
  assert result.val_accuracy.shape == (1,)
