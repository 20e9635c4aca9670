"""Static and dynamic hyperparameters: one compiled program for a whole sweep.

The library's configs (`TrainConfig`, `InferConfig`) are frozen dataclasses. Fields that fix
shapes or the structure of the computation (ensemble size, number of steps, loss kind) must be
static arguments of `jax.jit`; every other field (seed, learning rate, weight decay, dropout
rates, temperatures, weights) is passed as a traced array, so that a sweep over them compiles
once and can be `jax.vmap`ped. Each config names its dynamic fields in `DYNAMIC`; `split` turns
a config into the static config (those fields reset to their defaults, so configs that differ
only in them hash equal) and a dict of scalar arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

C = TypeVar("C")


def split(config: C) -> tuple[C, dict[str, jax.Array]]:
  """(static config, {dynamic field: scalar array}) of a config with a `DYNAMIC` tuple."""
  names = type(config).DYNAMIC
  defaults = {f.name: f.default for f in dataclasses.fields(config)}
  static = dataclasses.replace(config, **{n: defaults[n] for n in names})
  return static, {n: as_array(getattr(config, n)) for n in names}


def as_array(value: Any) -> jax.Array:
  """A scalar hyperparameter as an array: int32 for integers (seeds), else float32."""
  if isinstance(value, (bool, int)) or (hasattr(value, "dtype") and
                                        jnp.issubdtype(value.dtype, jnp.integer)):
    return jnp.asarray(value, jnp.int32)
  return jnp.asarray(value, jnp.float32)
