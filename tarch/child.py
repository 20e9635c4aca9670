"""The child-model family, and training many child models at once in one compiled program.

The family is an MLP classifier described by six choices (`ChildConfig.space`): hidden layers,
units per layer, activation, dropout, learning rate and decoupled weight decay (AdamW with a
cosine learning-rate decay). Every model is built with the family's maximal shapes
(`max_layers` hidden layers of `max_width` units) and told its own depth, width and activation by
arrays: units beyond its width are zeroed after the activation and layers beyond its depth pass
their input through, so a padded model computes exactly the function of the small one and its
padded weights never receive a gradient (tested against a network built at the small shapes).
Because architectures differ only in arrays, `train_models` trains many (architecture, task,
seed) triples in one `jax.vmap` inside one `jax.jit`; a new batch of the same size reuses the
compiled program.

Each model samples its minibatches (with replacement) from its task's training rows, stops
updating at the first non-finite training loss (reported as `failed_step`; the caller records a
failed run), and is scored by accuracy on the task's validation and test rows.

Shape letters: M models, T tasks, N rows, D input features, C classes, W width, B batch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from tarch import mesh as mesh_lib
from tarch import space as space_lib
from tarch.tasks import PaddedTasks

ACTIVATIONS = ("relu", "tanh", "gelu", "swish", "sigmoid")
# Every activation is one formula, a*relu(z) + (b*z + c) * sigmoid(k1*z + k3*z**3) + e, with
# per-activation coefficients (rows in ACTIVATIONS order): tanh(z) = 2 sigmoid(2z) - 1, and gelu
# in its tanh form (jax.nn.gelu's default) is z sigmoid(2 sqrt(2/pi) (z + 0.044715 z^3)). A batch
# of models with mixed activations then costs one sigmoid per unit, not one of each activation.
_GELU_K1 = 2.0 * (2.0 / np.pi) ** 0.5
_ACTIVATION_COEFFS = np.array([
    # a,   b,   c,    k1,        k3,                 e
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # relu (its sigmoid term is multiplied by zero)
    [0.0, 0.0, 2.0, 2.0, 0.0, -1.0],  # tanh
    [0.0, 1.0, 0.0, _GELU_K1, _GELU_K1 * 0.044715, 0.0],  # gelu (tanh approximation)
    [0.0, 1.0, 0.0, 1.0, 0.0, 0.0],  # swish
    [0.0, 0.0, 1.0, 1.0, 0.0, 0.0],  # sigmoid
], np.float32)


def activate(index: jax.Array, z: jax.Array) -> jax.Array:
  """The activation `ACTIVATIONS[index]` applied to `z` (see `_ACTIVATION_COEFFS`)."""
  a, b, c, k1, k3, e = jnp.asarray(_ACTIVATION_COEFFS)[index]
  return a * jax.nn.relu(z) + (b * z + c) * jax.nn.sigmoid(z * (k1 + k3 * z * z)) + e



@dataclasses.dataclass(frozen=True)
class ChildConfig:
  """The family's bounds and the training budget every model gets (static under jit)."""

  max_layers: int = 3  # hidden layers: a model has 1..max_layers
  max_width: int = 64  # units per hidden layer: a model has min_width..max_width (log scale)
  min_width: int = 8
  num_steps: int = 200  # optimiser steps per model
  batch_size: int = 32  # training rows per step, sampled with replacement
  learning_rate: tuple[float, float] = (1e-4, 1.0)  # log-uniform range of the peak rate
  weight_decay: tuple[float, float] = (1e-6, 0.1)  # log-uniform range (decoupled, AdamW)
  max_dropout: float = 0.6

  def __post_init__(self):
    if not 1 <= self.max_layers:
      raise ValueError(f"ChildConfig.max_layers must be >= 1, got {self.max_layers}")
    if not 1 <= self.min_width <= self.max_width:
      raise ValueError(f"ChildConfig needs 1 <= min_width <= max_width, got "
                       f"{self.min_width}, {self.max_width}")
    if self.num_steps < 1 or self.batch_size < 1:
      raise ValueError("ChildConfig.num_steps and batch_size must be >= 1")
    for name in ("learning_rate", "weight_decay"):
      low, high = getattr(self, name)
      if not 0 < low < high:
        raise ValueError(f"ChildConfig.{name} must be a range 0 < low < high, got {low, high}")
    if not 0 <= self.max_dropout < 1:
      raise ValueError(f"ChildConfig.max_dropout must lie in [0, 1), got {self.max_dropout}")

  @property
  def space(self) -> space_lib.Space:
    """The architecture space of this family (what `tarch.infer` searches)."""
    return space_lib.Space("mlp", (
        space_lib.Integer("num_layers", 1, self.max_layers),
        space_lib.Integer("width", self.min_width, self.max_width, log=True),
        space_lib.Categorical("activation", ACTIVATIONS),
        space_lib.Float("dropout", 0.0, self.max_dropout),
        space_lib.Float("learning_rate", *self.learning_rate, log=True),
        space_lib.Float("weight_decay", *self.weight_decay, log=True),
    ))


class Hyper(NamedTuple):
  """Per-model architecture arrays `[M]` (or scalars inside the vmap)."""

  num_layers: Any  # int32
  width: Any  # int32
  activation: Any  # int32 index into ACTIVATIONS
  dropout: Any  # float32
  learning_rate: Any  # float32
  weight_decay: Any  # float32


def hyperparams(archs: Sequence[Mapping[str, Any]]) -> Hyper:
  """Stacks architectures (dicts as `Space.decode` returns them) into `Hyper` arrays."""
  try:
    return Hyper(
        num_layers=np.array([int(a["num_layers"]) for a in archs], np.int32),
        width=np.array([int(a["width"]) for a in archs], np.int32),
        activation=np.array([ACTIVATIONS.index(a["activation"]) for a in archs], np.int32),
        dropout=np.array([a["dropout"] for a in archs], np.float32),
        learning_rate=np.array([a["learning_rate"] for a in archs], np.float32),
        weight_decay=np.array([a["weight_decay"] for a in archs], np.float32),
    )
  except (KeyError, ValueError) as e:
    raise ValueError(f"not an architecture of the MLP family: {e}") from None


@struct.dataclass
class TaskData:
  """The padded tasks as device arrays (see `tarch.tasks.PaddedTasks`)."""

  num_classes: int = struct.field(pytree_node=False)  # C, the logits' width (static)
  x_TxNxD: jax.Array
  y_TxN: jax.Array
  val_TxN: jax.Array
  test_TxN: jax.Array
  num_train_T: jax.Array  # a task's training rows are its rows 0..num_train_T[t]-1
  num_features_T: jax.Array
  num_classes_T: jax.Array


def task_data(padded: PaddedTasks) -> TaskData:
  """The device arrays `train_models` reads (checks that training rows come first)."""
  train = padded.train_TxN
  n_train = train.sum(1)
  if not np.all(train == (np.arange(train.shape[1]) < n_train[:, None])):
    raise ValueError("training rows must come first in each padded task (see tarch.tasks)")
  return TaskData(padded.num_classes, jnp.asarray(padded.x_TxNxD), jnp.asarray(padded.y_TxN),
                  jnp.asarray(padded.val_TxN), jnp.asarray(padded.test_TxN),
                  jnp.asarray(n_train, jnp.int32),
                  jnp.asarray(padded.feature_TxD.sum(1), jnp.int32),
                  jnp.asarray(padded.classes_T, jnp.int32))


class Result(NamedTuple):
  """Per-model outcome `[M]`."""

  val_accuracy: jax.Array
  test_accuracy: jax.Array
  train_loss: jax.Array  # mean training loss over the last tenth of the steps
  failed_step: jax.Array  # first step with a non-finite loss, -1 if none


def init_params(config: ChildConfig, key: jax.Array, num_features: int | jax.Array,
                width: int | jax.Array, num_inputs: int, num_classes: int,
                padded_width: int) -> dict:
  """LeCun-normal weights at padded shapes (`config.max_layers` hidden layers of `padded_width`
  units, `num_inputs` inputs, `num_classes` outputs), scaled by the model's real fan-in. Weights
  are drawn at `config.max_width` and cut, so a model's weights do not depend on its padding."""
  if padded_width > config.max_width:
    raise ValueError(f"padded_width {padded_width} exceeds max_width {config.max_width}")
  keys = jax.random.split(key, config.max_layers + 1)
  full, w, fan_in, layers = config.max_width, padded_width, num_features, []
  for i in range(config.max_layers):
    rows = num_inputs if i == 0 else full
    kernel = jax.random.normal(keys[i], (rows, full))[:rows if i == 0 else w, :w]
    kernel /= jnp.sqrt(jnp.asarray(fan_in, jnp.float32))
    layers.append({"kernel": kernel, "bias": jnp.zeros((w,))})
    fan_in = width
  out = jax.random.normal(keys[-1], (full, num_classes))[:w]
  out /= jnp.sqrt(jnp.asarray(width, jnp.float32))
  return {"hidden": layers, "out": {"kernel": out, "bias": jnp.zeros((num_classes,))}}


def _unit_uniforms(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Uniform draws of `shape` `[..., W]`, column u from `fold_in(key, u)`: a unit's draws do not
  depend on W."""
  draw = lambda u: jax.random.uniform(jax.random.fold_in(key, u), shape[:-1])
  return jax.vmap(draw, out_axes=-1)(jnp.arange(shape[-1]))


def forward(config: ChildConfig, params: dict, hp: Hyper, x_BxD: jax.Array,
            dropout_key: jax.Array | None = None) -> jax.Array:
  """Logits `[B, C]` of one (padded) model; dropout only when `dropout_key` is given."""
  units_W = jnp.arange(params["out"]["kernel"].shape[0]) < hp.width
  h = x_BxD
  for i, layer in enumerate(params["hidden"]):
    z = activate(hp.activation, h @ layer["kernel"] + layer["bias"])
    z = jnp.where(units_W, z, 0.0)
    if dropout_key is not None:
      # One key per unit, so a unit's mask does not depend on how wide the model was padded.
      keep = _unit_uniforms(jax.random.fold_in(dropout_key, i), z.shape) >= hp.dropout
      z = jnp.where(keep, z / (1.0 - hp.dropout), 0.0)
    h = z if i == 0 else jnp.where(i < hp.num_layers, z, h)
  return h @ params["out"]["kernel"] + params["out"]["bias"]


def _masked_logits(logits_BxC, num_classes):
  return jnp.where(jnp.arange(logits_BxC.shape[-1]) < num_classes, logits_BxC, -1e9)


class TrainState(NamedTuple):
  """One model's training state (a pytree; `[M, ...]` leaves when vmapped)."""

  params: dict
  opt_state: Any
  failed_step: jax.Array  # first step whose loss was non-finite, -1 while none
  data_key: jax.Array  # minibatches and dropout masks of step t come from fold_in(data_key, t)


_OPTIMIZER = optax.scale_by_adam()  # rescaled per model below: decoupled decay, cosine rate


def init_state(config: ChildConfig, padded_width: int, data: TaskData, hp: Hyper,
               task: jax.Array, key: jax.Array) -> TrainState:
  """The state of one model before its first step."""
  init_key, data_key = jax.random.split(key)
  params = init_params(config, init_key, data.num_features_T[task], hp.width,
                       data.x_TxNxD.shape[-1], data.num_classes, padded_width)
  return TrainState(params, _OPTIMIZER.init(params), jnp.int32(-1), data_key)


def train_step(config: ChildConfig, data: TaskData, hp: Hyper, task: jax.Array,
               state: TrainState, t: jax.Array) -> tuple[TrainState, jax.Array]:
  """One AdamW step of one model (step index `t`); returns the new state and the loss. After a
  non-finite loss or update the model stops changing (it keeps its last finite parameters) and
  `failed_step` keeps the step it happened at."""
  c = data.num_classes_T[task]
  batch_key, dropout_key = jax.random.split(jax.random.fold_in(state.data_key, t))
  rows_B = jax.random.randint(batch_key, (config.batch_size,), 0, data.num_train_T[task])

  def loss_fn(params):
    logits = forward(config, params, hp, data.x_TxNxD[task, rows_B], dropout_key)
    labels = data.y_TxN[task, rows_B]
    return optax.softmax_cross_entropy_with_integer_labels(_masked_logits(logits, c),
                                                           labels).mean()

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = _OPTIMIZER.update(grads, state.opt_state)
  rate = hp.learning_rate * 0.5 * (1.0 + jnp.cos(jnp.pi * t / config.num_steps))
  params = jax.tree.map(lambda p, u: p - rate * (u + hp.weight_decay * p), state.params, updates)
  finite = jnp.isfinite(loss) & jnp.all(jnp.stack(
      [jnp.isfinite(p).all() for p in jax.tree.leaves(params)]))
  ok = (state.failed_step < 0) & finite
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
  failed_step = jnp.where((state.failed_step < 0) & ~finite, t, state.failed_step)
  return TrainState(keep(params, state.params), keep(opt_state, state.opt_state), failed_step,
                    state.data_key), loss


def evaluate(config: ChildConfig, data: TaskData, hp: Hyper, task: jax.Array,
             params: dict) -> tuple[jax.Array, jax.Array]:
  """Validation and test accuracy of one trained model."""
  logits = _masked_logits(forward(config, params, hp, data.x_TxNxD[task]),
                          data.num_classes_T[task])
  correct = logits.argmax(-1) == data.y_TxN[task]

  def accuracy(mask_N):
    return jnp.sum(correct & mask_N) / jnp.maximum(mask_N.sum(), 1)

  return accuracy(data.val_TxN[task]), accuracy(data.test_TxN[task])


def _train_one(config: ChildConfig, padded_width: int, data: TaskData, hp: Hyper,
               task: jax.Array, key: jax.Array) -> Result:
  state = init_state(config, padded_width, data, hp, task, key)
  state, losses = jax.lax.scan(functools.partial(train_step, config, data, hp, task), state,
                               jnp.arange(config.num_steps))
  val, test = evaluate(config, data, hp, task, state.params)
  return Result(val, test, losses[-max(1, config.num_steps // 10):].mean(), state.failed_step)


@functools.partial(jax.jit, static_argnames=("config", "padded_width"))
def train_models(config: ChildConfig, data: TaskData, hp: Hyper, task_M: jax.Array,
                 key_M: jax.Array, padded_width: int | None = None) -> Result:
  """Trains M models (architecture `hp[m]` on task `task_M[m]` with seed `key_M[m]`) at once.

  `padded_width` (default `config.max_width`) is the hidden width every model is padded to; it
  must be >= every `hp.width`. Batching models of similar width under a smaller padding (see
  `padded_width_for`) saves compute without changing any result. One compiled program per
  (config, padded width, M, data shapes, input shardings). Models are independent, so inputs
  whose model axis is split over devices (`tarch.mesh.shard_batch`, data replicated) train each
  slice on its own device without communication, and the outputs come back split the same way
  (`train_batch` does this).
  """
  width = config.max_width if padded_width is None else padded_width
  return jax.vmap(functools.partial(_train_one, config, width, data))(hp, task_M, key_M)


def padded_width_for(config: ChildConfig, widths) -> int:
  """The padding for a batch of models: the next power of two >= their widest, at most
  `config.max_width` (so a sweep compiles one program per power of two)."""
  widest = int(np.max(widths))
  if widest > config.max_width:
    raise ValueError(f"width {widest} exceeds the family's max_width {config.max_width}")
  return min(config.max_width, 1 << max(0, widest - 1).bit_length())


def parameter_count(hp: Hyper, num_features, num_classes) -> np.ndarray:
  """Trainable parameters of each model at its own (unpadded) shapes, `[M]`."""
  layers, width = np.asarray(hp.num_layers, np.int64), np.asarray(hp.width, np.int64)
  d, c = np.asarray(num_features, np.int64), np.asarray(num_classes, np.int64)
  return (d + 1) * width + (layers - 1) * (width + 1) * width + (width + 1) * c


def multiply_adds(num_layers, width, num_features, num_classes) -> np.ndarray:
  """Multiply-adds of one example's forward pass through an MLP of these shapes."""
  layers, width = np.asarray(num_layers, np.int64), np.asarray(width, np.int64)
  d, c = np.asarray(num_features, np.int64), np.asarray(num_classes, np.int64)
  return d * width + (layers - 1) * width * width + width * c


def training_flops(config: ChildConfig, hp: Hyper, num_features, num_classes) -> np.ndarray:
  """Approximate training FLOPs of each model at its own shapes: 3 x (2 x multiply-adds) per
  example (forward plus backward), times batch size and steps, `[M]`."""
  macs = multiply_adds(hp.num_layers, hp.width, num_features, num_classes)
  return 6 * macs * config.batch_size * config.num_steps


def batch_plan(config: ChildConfig, widths, max_models: int) -> list[tuple[int, np.ndarray]]:
  """Splits models (given their widths, in a fixed order) into batches for `train_models`: models
  are grouped by padded width (`padded_width_for`), each group cut into batches of at most
  `max_models`. Returns `(padded_width, model indices)` per batch; the plan depends only on its
  arguments, so a resumed job finds the same batches."""
  if max_models < 1:
    raise ValueError(f"max_models must be >= 1, got {max_models}")
  widths = np.asarray(widths)
  padded = np.array([padded_width_for(config, [w]) for w in widths], np.int64)
  plan = []
  for width in np.unique(padded):
    members = np.flatnonzero(padded == width)
    plan += [(int(width), members[i:i + max_models]) for i in range(0, len(members), max_models)]
  return plan


def train_batch(config: ChildConfig, data: TaskData, hp: Hyper, task_M, key_M, members,
                padded_width: int, max_models: int, mesh: Mesh | None = None) -> Result:
  """Trains the models `members` (indices into `hp`, `task_M`, `key_M`; one batch of
  `batch_plan`); returns their `Result` as numpy arrays. The batch is padded to a power of two
  of models (at most `max_models`), so that a sweep compiles one program per (padded width,
  batch size) and reuses it. With a `mesh` (`tarch.mesh.data_mesh`), the model axis is split
  over its devices, the batch first rounded up to a multiple of the device count. Padding
  repeats the batch's first model and drops its results; no result depends on the padding or
  on the number of devices (up to float rounding)."""
  members = np.asarray(members)
  width, layers = np.asarray(hp.width)[members], np.asarray(hp.num_layers)[members]
  if width.max() > padded_width or width.min() < 1:
    raise ValueError(f"widths {width.min()}..{width.max()} do not fit padded_width {padded_width}")
  if layers.min() < 1 or layers.max() > config.max_layers:
    raise ValueError(f"num_layers {layers.min()}..{layers.max()} outside 1..{config.max_layers}")
  size = min(max(max_models, len(members)), 1 << (len(members) - 1).bit_length())
  if mesh is not None:
    size = mesh_lib.padded_size(size, mesh)
  run = np.concatenate([members, np.repeat(members[:1], size - len(members))])
  per_model = (jax.tree.map(lambda x: np.asarray(x)[run], hp), np.asarray(task_M)[run],
               key_M[run])
  if mesh is not None:
    per_model = mesh_lib.shard_batch(per_model, mesh)
    data = mesh_lib.replicate(data, mesh)
  result = train_models(config, data, *per_model, padded_width=padded_width)
  return jax.tree.map(lambda x: np.asarray(x)[:len(members)], result)
