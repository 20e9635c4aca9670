"""Search spaces: choices, the architecture encoding and its continuous relaxation.

An architecture is a mapping from choice name to value. It is encoded as a fixed-width float
vector `enc_E` (E = `Space.dim`): a one-hot block per categorical choice and one number in
[0, 1] per integer or float choice (the position of the value between `low` and `high`, on a log
scale when `log` is set). The relaxation used by gradient inference has the same width: `theta_E`
holds logits for each categorical block and a pre-sigmoid scalar for each numeric choice;
`Space.relax(theta_E, temperature)` maps it to a point in the convex hull of valid encodings.

Shape letters: E encoding width, N architectures, P pool members.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class SpaceError(ValueError):
  """A search space, or an architecture checked against it, is invalid."""


@dataclasses.dataclass(frozen=True)
class Categorical:
  """A choice among named values, encoded one-hot."""

  name: str
  values: tuple[str, ...]

  @property
  def width(self) -> int:
    return len(self.values)


@dataclasses.dataclass(frozen=True)
class Integer:
  """An integer in [low, high], encoded as its position in [0, 1] (log scale if `log`)."""

  name: str
  low: int
  high: int
  log: bool = False

  width = 1


@dataclasses.dataclass(frozen=True)
class Float:
  """A float in [low, high], encoded as its position in [0, 1] (log scale if `log`)."""

  name: str
  low: float
  high: float
  log: bool = False

  width = 1


Choice = Categorical | Integer | Float
_NUMERIC_TYPES = {"int": Integer, "float": Float}


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT_LIMIT = 2**63 - 1
_SPACE_KEYS = ("name", "choices")
_CHOICE_KEYS = {"categorical": ("name", "type", "values"),
                "int": ("name", "type", "low", "high", "log"),
                "float": ("name", "type", "low", "high", "log")}
_ALL_CHOICE_KEYS = ("name", "type", "values", "low", "high", "log")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
  """A JSON object's dict, refusing a repeated key (json keeps the last one silently)."""
  out = {}
  for key, value in pairs:
    if key in out:
      name = dict(pairs).get("name")
      which = f"the object named {name!r}" if isinstance(name, str) else "one object"
      raise ValueError(f"key {key!r} appears twice in {which}")
    out[key] = value
  return out


def _check_keys(d: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
  """SpaceError for a key not in `allowed`, suggesting the allowed key it nearly spells (a key
  that is silently ignored would silently change the space: `"Log": true` is not log scale)."""
  for key in d:
    if key in allowed:
      continue
    near = difflib.get_close_matches(str(key).strip().lower(), allowed, n=1, cutoff=0.7)
    hint = f"; did you mean {near[0]!r}?" if near else f"; allowed: {', '.join(allowed)}"
    raise SpaceError(f"{where}: unknown key {key!r}{hint}")


def _choice_from_dict(d: Mapping[str, Any], where: str) -> Choice:
  """Builds one choice from its JSON object; `where` names it in errors."""
  if not isinstance(d, Mapping):
    raise SpaceError(f"{where}: expected an object, got {type(d).__name__}")
  name, kind = d.get("name"), d.get("type")
  if isinstance(name, str) and name:
    where = f"{where} ({name!r})"
  # Keys first, so that a misspelled "name" or "type" is named as such.
  _check_keys(d, _CHOICE_KEYS.get(kind, _ALL_CHOICE_KEYS), where)
  if not isinstance(name, str) or not name:
    raise SpaceError(f"{where}: 'name' must be a non-empty string")
  if kind == "categorical":
    values = d.get("values")
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
      raise SpaceError(f"{where}: 'values' must be a non-empty list")
    bad = [v for v in values if not isinstance(v, (str, int)) or isinstance(v, bool)]
    if bad:
      # A value is matched by its spelling in the runs table: true, 1e-5 or null have no one
      # spelling (Python's would be True, 1e-05, None), so they are written as strings.
      raise SpaceError(f"{where}: categorical values are strings (or integers), spelled as in "
                       f"the runs table; got {json.dumps(bad[0])} ({type(bad[0]).__name__}): "
                       "quote it")
    values = tuple(str(v) for v in values)
    if len(set(values)) != len(values):
      raise SpaceError(f"{where}: duplicate values in {list(values)}")
    return Categorical(name, values)
  if kind in _NUMERIC_TYPES:
    for key in ("low", "high"):
      bound = d.get(key)
      if not isinstance(bound, (int, float)) or isinstance(bound, bool):
        raise SpaceError(f"{where}: '{key}' must be a number")
      if isinstance(bound, float) and not math.isfinite(bound):
        raise SpaceError(f"{where}: '{key}' must be finite, got {bound}")
      # Sampling and discretising run in float32 (and integers are exact int64 in the tables).
      limit = _INT_LIMIT if kind == "int" else _FLOAT32_MAX
      if abs(bound) > limit:  # exact for ints of any length
        what = "int64" if kind == "int" else "float32"
        digits = str(bound)
        shown = digits if len(digits) <= 40 else f"{digits[:20]}... ({len(digits)} digits)"
        raise SpaceError(f"{where}: '{key}' = {shown} is outside {what}'s range (+-{limit:.4g})")
    low, high, log = d["low"], d["high"], d.get("log", False)
    if not isinstance(log, bool):
      raise SpaceError(f"{where}: 'log' must be true or false, got {log!r}")
    if kind == "int" and (low != int(low) or high != int(high)):
      raise SpaceError(f"{where}: int bounds must be integers, got {low}, {high}")
    if not low < high:
      raise SpaceError(f"{where}: need low < high, got low={low}, high={high}")
    if kind == "float" and not np.float32(low) < np.float32(high):
      raise SpaceError(f"{where}: low={low} and high={high} are one value in float32, in "
                       "which tarch samples and discretises; widen the range")
    if log and low <= 0:
      raise SpaceError(f"{where}: log scale needs low > 0, got {low}")
    if kind == "int":
      return Integer(name, int(low), int(high), log)
    return Float(name, float(low), float(high), log)
  raise SpaceError(f"{where}: 'type' must be one of categorical, int, float; got {kind!r}")


@dataclasses.dataclass(frozen=True)
class Space:
  """A search space: an ordered tuple of choices. Hashable, so it can be a static jit argument."""

  name: str
  choices: tuple[Choice, ...]

  def __post_init__(self):
    if not self.choices:
      raise SpaceError(f"space {self.name!r} has no choices")
    names = [c.name for c in self.choices]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
      raise SpaceError(f"space {self.name!r}: duplicate choice names {dupes}")

  # ---------------------------------------------------------------- construction / (de)serialise

  @classmethod
  def from_dict(cls, d: Mapping[str, Any], source: str = "space") -> Space:
    """Builds a space from the `space.json` object; errors name `source` and the choice."""
    if not isinstance(d, Mapping):
      raise SpaceError(f"{source}: expected a JSON object")
    _check_keys(d, _SPACE_KEYS, source)
    choices = d.get("choices")
    if not isinstance(choices, list) or not choices:
      raise SpaceError(f"{source}: 'choices' must be a non-empty list")
    parsed = tuple(
        _choice_from_dict(c, f"{source}: choices[{i}]") for i, c in enumerate(choices))
    try:
      return cls(str(d.get("name", "space")), parsed)
    except SpaceError as e:
      raise SpaceError(f"{source}: {e}") from None

  @classmethod
  def from_json(cls, path: str | os.PathLike) -> Space:
    """Reads a `space.json` file (UTF-8, with or without a byte-order mark)."""
    try:
      with open(path, encoding="utf-8-sig") as f:
        d = json.load(f, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; so are
      # duplicate keys and integers beyond Python's digit limit
      raise SpaceError(f"{path}: not valid JSON ({e})") from None
    return cls.from_dict(d, source=str(path))

  def to_dict(self) -> dict[str, Any]:
    out = []
    for c in self.choices:
      if isinstance(c, Categorical):
        out.append({"name": c.name, "type": "categorical", "values": list(c.values)})
      else:
        kind = "int" if isinstance(c, Integer) else "float"
        out.append({"name": c.name, "type": kind, "low": c.low, "high": c.high, "log": c.log})
    return {"name": self.name, "choices": out}

  # ---------------------------------------------------------------- layout

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(c.name for c in self.choices)

  @property
  def dim(self) -> int:
    """Width E of the encoding (and of the relaxed parameters)."""
    return sum(c.width for c in self.choices)

  @property
  def slices(self) -> tuple[tuple[int, int], ...]:
    """(start, stop) of each choice's block in the encoding."""
    out, start = [], 0
    for c in self.choices:
      out.append((start, start + c.width))
      start += c.width
    return tuple(out)

  @property
  def numeric_dims(self) -> tuple[int, ...]:
    """Encoding entries of the integer and float choices (one each)."""
    return tuple(a for c, (a, _) in zip(self.choices, self.slices)
                 if not isinstance(c, Categorical))

  # ---------------------------------------------------------------- discrete <-> encoding

  def validate(self, arch: Mapping[str, Any]) -> None:
    """Raises SpaceError if `arch` is not a valid architecture of this space."""
    missing = [n for n in self.names if n not in arch]
    if missing:
      raise SpaceError(f"architecture is missing choices {missing}")
    for c in self.choices:
      _encode_value(c, arch[c.name])

  def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
    """Encodes one architecture as `enc_E` (float32)."""
    self.validate(arch)
    return np.concatenate([_encode_value(c, arch[c.name]) for c in self.choices]).astype(
        np.float32)

  def encode_columns(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
    """Encodes N architectures given column-wise (choice name -> N values) as `enc_NxE`.

    Values must already be valid (see `tarch.runs` for checked loading); invalid ones raise.
    """
    blocks = []
    for c in self.choices:
      if isinstance(c, Categorical):
        col = np.asarray(columns[c.name], dtype=object)  # no coercion of mixed or NUL values
        index = {v: i for i, v in enumerate(c.values)}
        try:
          idx = np.array([index[str(v)] for v in col], dtype=np.int64)
        except KeyError as e:
          raise SpaceError(f"{c.name}: unknown value {e.args[0]!r}; valid: {list(c.values)}")
        blocks.append(np.eye(c.width, dtype=np.float32)[idx])
      else:
        col = np.asarray(columns[c.name])
        if isinstance(c, Float) or col.dtype.kind not in "iu":
          col = col.astype(np.float64)  # integers stay exact (`_to_unit`)
        blocks.append(_to_unit(c, col)[:, None].astype(np.float32))
    return np.concatenate(blocks, axis=1)

  def decode(self, enc_E: Any) -> dict[str, Any]:
    """Decodes an encoding (or any relaxed point) to the nearest architecture."""
    enc_E = np.asarray(enc_E, dtype=np.float64)
    arch = {}
    for c, (a, b) in zip(self.choices, self.slices):
      block = enc_E[a:b]
      if isinstance(c, Categorical):
        arch[c.name] = c.values[int(np.argmax(block))]
      else:
        # Clipped: at u = 0 or 1 the exp/log round trip can miss a bound by an ulp.
        value = min(max(_from_unit(c, float(np.clip(block[0], 0.0, 1.0))), c.low), c.high)
        arch[c.name] = round(value) if isinstance(c, Integer) else float(value)
    return arch

  def decode_many(self, enc_NxE: Any) -> list[dict[str, Any]]:
    return [self.decode(e) for e in np.asarray(enc_NxE)]

  def format(self, arch: Mapping[str, Any]) -> str:
    """A one-line spelling of an architecture, exact and unambiguous (a table key).

    `name=value` per choice, joined by commas. Floats are spelled by their shortest exact
    round-trip form (`repr`), integers in full, so two architectures share a key only if they
    are equal. A name or categorical value that contains `,`, `=`, `"` or `\\`, or that is
    empty or has surrounding spaces, is spelled as a JSON string, so that no value can imitate a
    separator: `op="a,b=c"` is one value.
    """
    return self.format_columns({n: [arch[n]] for n in self.names})[0]

  def format_columns(self, columns: Mapping[str, Sequence[Any]]) -> list[str]:
    """`format` of N architectures given column-wise (choice name -> N values)."""
    parts = []
    for c in self.choices:
      prefix = f"{_key_token(c.name)}="
      col = columns[c.name]
      if isinstance(c, Float):
        parts.append([f"{prefix}{float(v) + 0.0!r}" for v in col])  # + 0.0: -0.0 is 0.0
      elif isinstance(c, Integer):
        parts.append([f"{prefix}{int(v)}" for v in col])
      else:
        spelled = {v: prefix + _key_token(v) for v in c.values}
        parts.append([spelled.get(str(v)) or prefix + _key_token(str(v)) for v in col])
    return [",".join(row) for row in zip(*parts)]

  # ---------------------------------------------------------------- relaxation (jit-able)

  def relax(self, theta_E: jax.Array, temperature: jax.Array | float = 1.0) -> jax.Array:
    """Maps unconstrained parameters to a relaxed encoding (softmax / sigmoid per block)."""
    blocks = []
    for c, (a, b) in zip(self.choices, self.slices):
      if isinstance(c, Categorical):
        blocks.append(jax.nn.softmax(theta_E[..., a:b] / temperature, axis=-1))
      else:
        blocks.append(jax.nn.sigmoid(theta_E[..., a:b]))
    return jnp.concatenate(blocks, axis=-1)

  def discretize(self, enc_E: jax.Array) -> jax.Array:
    """Snaps a relaxed encoding to a valid one: argmax one-hot; integers to their grid."""
    blocks = []
    for c, (a, b) in zip(self.choices, self.slices):
      block = enc_E[..., a:b]
      if isinstance(c, Categorical):
        blocks.append(jax.nn.one_hot(jnp.argmax(block, axis=-1), c.width, dtype=enc_E.dtype))
      elif isinstance(c, Integer):
        value = jnp.round(_from_unit(c, jnp.clip(block, 0.0, 1.0), xp=jnp))
        blocks.append(_to_unit(c, value, xp=jnp).astype(enc_E.dtype))
      else:
        blocks.append(jnp.clip(block, 0.0, 1.0))
    return jnp.concatenate(blocks, axis=-1)

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """Samples `enc_NxE` uniformly (log-uniformly for log choices); integers uniform on grid."""
    keys = jax.random.split(key, len(self.choices))
    blocks = []
    for k, c in zip(keys, self.choices):
      if isinstance(c, Categorical):
        idx = jax.random.randint(k, (n,), 0, c.width)
        blocks.append(jax.nn.one_hot(idx, c.width, dtype=jnp.float32))
      elif isinstance(c, Integer):
        if c.log:
          # Uniform in log space, then rounded: matches what `log` means for the user.
          u = jax.random.uniform(k, (n, 1))
          value = jnp.round(_from_unit(c, u, xp=jnp))
        else:
          value = jax.random.randint(k, (n, 1), c.low, c.high + 1).astype(jnp.float32)
        blocks.append(_to_unit(c, value, xp=jnp).astype(jnp.float32))
      else:
        blocks.append(jax.random.uniform(k, (n, 1), dtype=jnp.float32))
    return jnp.concatenate(blocks, axis=-1)


def _key_token(text: str) -> str:
  """`text` as it stands in `Space.format`, JSON-quoted where it could be misread."""
  if not text or text != text.strip() or any(ch in text for ch in ',="\\'):
    return json.dumps(text, ensure_ascii=False)
  return text


def _to_unit(c: Integer | Float, value, xp=np):
  """Position of `value` in [0, 1] between c.low and c.high (log scale if c.log).

  Integer arrays (numpy) are offset from c.low exactly, in uint64, so that neighbouring
  integers beyond 2**53 keep distinct positions.
  """
  value = xp.asarray(value)
  if xp is np and value.dtype.kind in "iu":
    offset = (value.astype(np.int64).view(np.uint64) - np.uint64(c.low % 2**64)).astype(
        np.float64)
  else:
    offset = value - float(c.low)
  if c.log:
    # log1p of the relative offset, not a difference of two logs: no cancellation in float32
    # for narrow ranges of large values (sample and encode then agree).
    return xp.log1p(offset / float(c.low)) / _log_span(c)
  return offset / float(c.high - c.low)


def _log_span(c: Integer | Float) -> float:
  """log(high / low), accurate however narrow the range (exact integer difference)."""
  return math.log1p((c.high - c.low) / c.low)


def _from_unit(c: Integer | Float, u, xp=np):
  """Inverse of `_to_unit`."""
  if c.log:
    return float(c.low) * xp.exp(u * _log_span(c))
  return float(c.low) + u * float(c.high - c.low)


def _encode_value(c: Choice, value: Any) -> np.ndarray:
  """Encodes one choice's value, raising SpaceError if it is invalid."""
  if isinstance(c, Categorical):
    if str(value) not in c.values:
      raise SpaceError(f"{c.name}: unknown value {value!r}; valid: {list(c.values)}")
    out = np.zeros(c.width)
    out[c.values.index(str(value))] = 1.0
    return out
  if isinstance(c, Integer) and isinstance(value, (int, np.integer)) and not isinstance(
      value, (bool, np.bool_)):
    x = int(value)  # exact, however large
  else:
    try:
      x = float(value)
    except (TypeError, ValueError):
      raise SpaceError(f"{c.name}: expected a number, got {value!r}") from None
  if not math.isfinite(x) or not c.low <= x <= c.high:
    raise SpaceError(f"{c.name}: value {value!r} outside [{c.low}, {c.high}]")
  if isinstance(c, Integer):
    if x != int(x):
      raise SpaceError(f"{c.name}: expected an integer, got {value!r}")
    x = np.int64(int(x))
  return np.array([_to_unit(c, x)])
