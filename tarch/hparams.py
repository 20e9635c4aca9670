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
  fields = {f.name: f for f in dataclasses.fields(config)}
  static = dataclasses.replace(config, **{n: fields[n].default for n in names})
  return static, {n: as_array(getattr(config, n), fields[n].type) for n in names}


def as_array(value: Any, declared: Any = "float") -> jax.Array:
  """A scalar hyperparameter as an array of its field's declared type: int32 for `int` fields
  (seeds; ValueError outside int32), float32 for the others (an integer value included)."""
  if declared in ("int", int):
    if not -2**31 <= int(value) < 2**31:
      raise ValueError(f"{value} does not fit in int32")
    return jnp.asarray(value, jnp.int32)
  return jnp.asarray(value, jnp.float32)
