"""Tests for tarch.space: construction, encode/decode round trips, relaxation and jit use."""

import functools
import json
import math

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tarch.space import Categorical, Float, Integer, Space, SpaceError

# Bounded example counts keep the whole file near ten seconds on 2 CPU cores.
_FAST = hypothesis.settings(max_examples=50, deadline=None)
_FEW = hypothesis.settings(max_examples=25, deadline=None)

TOY = {
    "name": "toy",
    "choices": [
        {"name": "op", "type": "categorical", "values": ["gcn", "0001", "None"]},
        {"name": "layers", "type": "int", "low": 1, "high": 5},
        {"name": "lr", "type": "float", "low": 1e-4, "high": 0.1, "log": True},
    ],
}

# A few fixed spaces for the jax properties, so each jitted function compiles once per space
# rather than once per hypothesis example. Together they cover every choice kind and log flag,
# plus a one-value categorical.
FIXED_SPACES = (
    Space.from_dict(TOY),
    Space("cats", (Categorical("a", ("x",)), Categorical("b", tuple("uvwxyz")))),
    Space("nums", (Integer("n", 2, 512, log=True), Integer("m", -3, 3),
                   Float("f", -1.0, 1.0), Float("g", 1e-3, 10.0, log=True))),
    Space("mixed", (Integer("width", 1, 100, log=True), Categorical("act", ("relu", "gelu")),
                    Float("drop", 0.0, 0.5), Categorical("norm", ("bn", "ln", "none", "gn")))),
)
N = 8  # Rows per batch in the jax properties; fixed so shapes (and compilations) stay fixed.

_sample = jax.jit(Space.sample, static_argnums=(0, 2))
_relax = jax.jit(Space.relax, static_argnums=0)
_discretize = jax.jit(Space.discretize, static_argnums=0)


# ------------------------------------------------------------------------------------------------
# Strategies


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8)


@st.composite
def choices(draw, name):
  """One valid choice named `name`: categorical, int or float, with or without log scale."""
  kind = draw(st.sampled_from(["categorical", "int", "int_log", "float", "float_log"]))
  if kind == "categorical":
    text = st.text(max_size=5)
    values = draw(st.lists(text, min_size=1, max_size=6, unique=True))
    return Categorical(name, tuple(values))
  if kind == "int":
    low = draw(st.integers(-1000, 1000))
    return Integer(name, low, low + draw(st.integers(1, 10_000)))
  if kind == "int_log":
    low = draw(st.integers(1, 1000))
    return Integer(name, low, low + draw(st.integers(1, 100_000)), log=True)
  if kind == "float":
    low = draw(st.floats(-1e3, 1e3))
    high = low + draw(st.floats(1e-2, 1e3))
    hypothesis.assume(low < high)
    return Float(name, low, high)
  low = draw(st.floats(1e-6, 1e3))
  high = low * draw(st.floats(1.01, 1e6))
  return Float(name, low, high, log=True)


@st.composite
def spaces(draw):
  """A valid space of 1 to 5 choices with distinct names."""
  names = draw(st.lists(_names, min_size=1, max_size=5, unique=True))
  return Space(draw(_names), tuple(draw(choices(n)) for n in names))


def values(c):
  """Strategy for a valid value of choice `c`."""
  if isinstance(c, Categorical):
    return st.sampled_from(c.values)
  if isinstance(c, Integer):
    return st.integers(c.low, c.high)
  return st.floats(c.low, c.high)


def archs(space):
  """Strategy for a valid architecture of `space`."""
  return st.fixed_dictionaries({c.name: values(c) for c in space.choices})


@st.composite
def space_and_archs(draw, max_archs=1):
  space = draw(spaces())
  return space, draw(st.lists(archs(space), min_size=1, max_size=max_archs))


@st.composite
def fixed_space_and_theta(draw):
  """A fixed space and `theta_NxE` of moderate logits (sigmoid stays inside (0, 1) in float32)."""
  space = draw(st.sampled_from(FIXED_SPACES))
  theta = draw(hnp.arrays(np.float32, (N, space.dim), elements=st.floats(-8, 8, width=32)))
  return space, theta


def _value_from_unit(c, u):
  """The float64 value at position `u` of a numeric choice, before integer rounding."""
  if c.log:
    return math.exp(math.log(c.low) + u * (math.log(c.high) - math.log(c.low)))
  return c.low + u * (c.high - c.low)


# How far `sample` (float32, on device) may put a value from `encode`'s (float64) position.
_UNIT_TOL = 1e-6


def _assert_same_arch(space, got, want):
  """Categoricals and ints exactly; floats to float32 encoding precision."""
  assert set(got) == set(space.names)
  for c in space.choices:
    if isinstance(c, Float):
      span = math.log(c.high / c.low) if c.log else c.high - c.low
      tol = 1e-6 * span * (abs(want[c.name]) if c.log else 1.0)
      assert got[c.name] == pytest.approx(want[c.name], rel=1e-6, abs=tol), c
      assert isinstance(got[c.name], float)
    else:
      assert got[c.name] == want[c.name], c
      assert type(got[c.name]) is type(want[c.name])


def _assert_valid_encoding(space, enc_E):
  """One-hot categorical blocks, numbers in [0, 1] with integers on their grid."""
  enc_E = np.asarray(enc_E)
  assert enc_E.shape == (space.dim,)
  for c, (a, b) in zip(space.choices, space.slices):
    block = enc_E[a:b]
    if isinstance(c, Categorical):
      assert sorted(block.tolist()) == [0.0] * (c.width - 1) + [1.0], c
    else:
      assert 0.0 <= block[0] <= 1.0, c
      if isinstance(c, Integer):
        value = _value_from_unit(c, float(block[0]))
        assert value == pytest.approx(round(value), abs=1e-3), c
  space.validate(space.decode(enc_E))


# ------------------------------------------------------------------------------------------------
# Layout and round trips


@_FAST
@hypothesis.given(spaces())
def test_layout(space):
  assert space.dim == sum(c.width for c in space.choices)
  starts = [a for a, _ in space.slices]
  stops = [b for _, b in space.slices]
  assert starts == [0] + stops[:-1] and stops[-1] == space.dim
  assert space.numeric_dims == tuple(
      a for c, (a, _) in zip(space.choices, space.slices) if not isinstance(c, Categorical))


@_FAST
@hypothesis.given(space_and_archs())
def test_decode_encode_round_trip(space_archs):
  space, (arch,) = space_archs
  enc_E = space.encode(arch)
  assert enc_E.shape == (space.dim,) and enc_E.dtype == np.float32
  _assert_same_arch(space, space.decode(enc_E), arch)


@_FAST
@hypothesis.given(space_and_archs(max_archs=5))
def test_encode_columns_matches_encode(space_archs):
  space, arch_list = space_archs
  columns = {n: [a[n] for a in arch_list] for n in space.names}
  enc_NxE = space.encode_columns(columns)
  assert enc_NxE.shape == (len(arch_list), space.dim) and enc_NxE.dtype == np.float32
  np.testing.assert_array_equal(enc_NxE, np.stack([space.encode(a) for a in arch_list]))


@_FAST
@hypothesis.given(spaces())
def test_to_dict_from_dict_round_trip(space):
  # Through JSON text, as a space.json file would be.
  assert Space.from_dict(json.loads(json.dumps(space.to_dict()))) == space


def test_from_json_reads_file(tmp_path):
  path = tmp_path / "space.json"
  path.write_text(json.dumps(TOY))
  space = Space.from_json(path)
  assert space == Space.from_dict(TOY)
  assert space.names == ("op", "layers", "lr")
  assert space.choices[1] == Integer("layers", 1, 5)
  assert space.choices[2] == Float("lr", 1e-4, 0.1, log=True)
  assert space.dim == 5


def test_categorical_values_are_strings():
  space = Space.from_dict({"choices": [{"name": "k", "type": "categorical", "values": [1, 3]}]})
  assert space.choices[0].values == ("1", "3")
  assert space.decode(space.encode({"k": 3})) == {"k": "3"}


# ------------------------------------------------------------------------------------------------
# Sampling, relaxation and discretisation (jitted once per fixed space)


@_FEW
@hypothesis.given(st.sampled_from(FIXED_SPACES), st.integers(0, 2**31 - 1))
def test_samples_are_valid_fixed_points(space, seed):
  enc_NxE = np.asarray(_sample(space, jax.random.key(seed), N))
  assert enc_NxE.shape == (N, space.dim) and enc_NxE.dtype == np.float32
  np.testing.assert_array_equal(np.asarray(_discretize(space, enc_NxE)), enc_NxE)
  for enc_E, arch in zip(enc_NxE, space.decode_many(enc_NxE)):
    _assert_valid_encoding(space, enc_E)
    space.validate(arch)
    np.testing.assert_allclose(space.encode(arch), enc_E, rtol=0, atol=_UNIT_TOL)


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(spaces(), st.integers(0, 2**31 - 1))
def test_samples_of_random_spaces_round_trip(space, seed):
  # Eager and few examples: every new space costs fresh XLA compilations.
  enc_NxE = np.asarray(space.sample(jax.random.key(seed), 4))
  np.testing.assert_array_equal(np.asarray(space.discretize(enc_NxE)), enc_NxE)
  for enc_E in enc_NxE:
    arch = space.decode(enc_E)
    space.validate(arch)
    np.testing.assert_allclose(space.encode(arch), enc_E, rtol=0, atol=_UNIT_TOL)


@_FAST
@hypothesis.given(fixed_space_and_theta(), st.floats(0.1, 5.0))
def test_relax_gives_probabilities_and_unit_numbers(space_theta, temperature):
  space, theta_NxE = space_theta
  relaxed_NxE = np.asarray(_relax(space, theta_NxE, temperature))
  assert relaxed_NxE.shape == theta_NxE.shape
  for c, (a, b) in zip(space.choices, space.slices):
    block = relaxed_NxE[:, a:b]
    if isinstance(c, Categorical):
      assert np.all(block >= 0) and np.all(block <= 1)
      np.testing.assert_allclose(block.sum(-1), 1.0, atol=1e-5)
    else:
      assert np.all(block > 0) and np.all(block < 1)


@_FAST
@hypothesis.given(fixed_space_and_theta(), st.floats(0.1, 5.0), st.floats(1.05, 10.0))
def test_lower_temperature_is_more_peaked(space_theta, cold, ratio):
  space, theta_NxE = space_theta
  cold_NxE = np.asarray(_relax(space, theta_NxE, cold))
  warm_NxE = np.asarray(_relax(space, theta_NxE, cold * ratio))
  for c, (a, b) in zip(space.choices, space.slices):
    if isinstance(c, Categorical):
      assert np.all(cold_NxE[:, a:b].max(-1) >= warm_NxE[:, a:b].max(-1) - 1e-6)
    else:  # Temperature applies to the categorical blocks only.
      np.testing.assert_array_equal(cold_NxE[:, a:b], warm_NxE[:, a:b])


@_FAST
@hypothesis.given(fixed_space_and_theta())
def test_discretize_relaxed_is_valid_and_decodes_the_same(space_theta):
  space, theta_NxE = space_theta
  relaxed_NxE = np.asarray(_relax(space, theta_NxE, 1.0))
  snapped_NxE = np.asarray(_discretize(space, relaxed_NxE))
  np.testing.assert_array_equal(np.asarray(_discretize(space, snapped_NxE)), snapped_NxE)
  for relaxed_E, snapped_E in zip(relaxed_NxE, snapped_NxE):
    _assert_valid_encoding(space, snapped_E)
    got, want = space.decode(relaxed_E), space.decode(snapped_E)
    for c, (a, _) in zip(space.choices, space.slices):
      if isinstance(c, Integer) and got[c.name] != want[c.name]:
        # Only at a rounding tie: discretize rounds in float32, decode in float64.
        value = _value_from_unit(c, float(relaxed_E[a]))
        assert abs(value % 1 - 0.5) < 1e-4 * max(1.0, abs(value)), (c, value)
      else:
        assert got[c.name] == want[c.name], c


# ------------------------------------------------------------------------------------------------
# Invalid spaces


def _space(*choices, name="s"):
  return {"name": name, "choices": list(choices)}


_CAT = {"name": "op", "type": "categorical", "values": ["a", "b"]}


def _num(kind="int", low=1, high=4, **kw):
  return {"name": "n", "type": kind, "low": low, "high": high, **kw}


@pytest.mark.parametrize("d, message", [
    ([], "expected a JSON object"),
    (_space(), "'choices' must be a non-empty list"),
    ({"name": "s"}, "'choices' must be a non-empty list"),
    (_space(_CAT, dict(_CAT, values=["c"])), "duplicate choice names ['op']"),
    (_space({"type": "int", "low": 0, "high": 1}), "'name' must be a non-empty string"),
    (_space(_CAT, "op"), "choices[1]: expected an object"),
    (_space(dict(_CAT, type="bool")), "'type' must be one of categorical, int, float; got 'bool'"),
    (_space(dict(_CAT, values=[])), "choices[0] ('op'): 'values' must be a non-empty list"),
    (_space({"name": "op", "type": "categorical"}), "'values' must be a non-empty list"),
    (_space(dict(_CAT, values="ab")), "'values' must be a non-empty list"),
    (_space(dict(_CAT, values=["a", "b", "a"])), "duplicate values"),
    (_space(dict(_CAT, values=["1", 1])), "duplicate values"),
    (_space(_CAT, _num(low=4, high=4)), "choices[1] ('n'): need low < high, got low=4, high=4"),
    (_space(_num("float", low=2.0, high=1.0)), "need low < high"),
    (_space(_num(low=0, log=True)), "log scale needs low > 0, got 0"),
    (_space(_num("float", low=-1.0, high=1.0, log=True)), "log scale needs low > 0"),
    (_space(_num(low=0.5)), "int bounds must be integers"),
    (_space(_num(high=2.5)), "int bounds must be integers"),
    (_space(_num(low="1")), "'low' must be a number"),
    (_space(_num("float", high=True)), "'high' must be a number"),
    (_space({"name": "n", "type": "float", "low": 0.0}), "'high' must be a number"),
])
def test_invalid_space_rejected(d, message):
  with pytest.raises(SpaceError) as e:
    Space.from_dict(d, source="my/space.json")
  assert message in str(e.value)
  assert str(e.value).startswith("my/space.json")


def test_space_constructor_checks_choices():
  with pytest.raises(SpaceError, match="has no choices"):
    Space("s", ())
  with pytest.raises(SpaceError, match=r"duplicate choice names \['a'\]"):
    Space("s", (Integer("a", 0, 1), Float("b", 0.0, 1.0), Categorical("a", ("x",))))


def test_from_json_invalid_json_names_file(tmp_path):
  path = tmp_path / "space.json"
  path.write_text('{"choices": [')
  with pytest.raises(SpaceError, match="not valid JSON") as e:
    Space.from_json(path)
  assert str(path) in str(e.value)


@pytest.mark.parametrize("d, message", [
    (_space(_num(Log=True)), r"choices\[0\] \('n'\): unknown key 'Log'; did you mean 'log'\?"),
    (_space(_num(**{"high ": 9})), r"unknown key 'high '; did you mean 'high'\?"),
    (_space(dict(_CAT, low=0)), r"unknown key 'low'; allowed: name, type, values"),
    ({**_space(_CAT), "Choices": []}, r"unknown key 'Choices'; did you mean 'choices'\?"),
    (_space({"name": "n", "typ": "int", "low": 1, "high": 9}),
     r"choices\[0\] \('n'\): unknown key 'typ'; did you mean 'type'\?"),
    (_space({"Name": "n", "type": "int", "low": 1, "high": 9}),
     r"choices\[0\]: unknown key 'Name'; did you mean 'name'\?"),
])
def test_unknown_keys_are_errors_not_silently_ignored(d, message):
  with pytest.raises(SpaceError, match=message):
    Space.from_dict(d)


@pytest.mark.parametrize("d, message", [
    (_space(dict(_CAT, values=[True, "x"])), r"categorical values are strings \(or integers\), "
     r"spelled as in the runs table; got true \(bool\): quote it"),
    (_space(dict(_CAT, values=[1e-5, "x"])), r"got 1e-05 \(float\)"),
    (_space(dict(_CAT, values=[None])), r"got null"),
    (_space(dict(_CAT, values=[["x"]])), r"got \[\"x\"\] \(list\)"),
    (_space(_num(high=10**400)), r"'high' = 10{19}\.\.\. \(401 digits\) is outside int64"),
])
def test_categorical_values_and_bounds_of_any_size_are_checked(d, message):
  with pytest.raises(SpaceError, match=message):
    Space.from_dict(d)


@pytest.mark.parametrize("text, message", [
    ('{"choices": [{"name": "n", "type": "int", "low": 1, "high": 9, "log": true, "log": false}]}',
     r"key 'log' appears twice in the object named 'n'"),
    ('{"choices": [{"name": "n", "type": "int", "low": 1, "high": ' + "9" * 5000 + "}]}",
     r"not valid JSON \(Exceeds the limit"),
    ("[" * 100_000 + "]" * 100_000, r"not valid JSON \(maximum recursion depth"),
])
def test_from_json_refuses_repeated_keys_and_unreadable_json(tmp_path, text, message):
  path = tmp_path / "space.json"
  path.write_text(text)
  with pytest.raises(SpaceError, match=message):
    Space.from_json(path)


def test_from_json_accepts_a_byte_order_mark(tmp_path):
  path = tmp_path / "space.json"
  path.write_bytes(b"\xef\xbb\xbf" + json.dumps(TOY).encode())
  assert Space.from_json(path) == Space.from_dict(TOY)


def test_from_json_invalid_space_names_file(tmp_path):
  path = tmp_path / "space.json"
  path.write_text(json.dumps(_space(_num(low=3, high=1))))
  with pytest.raises(SpaceError, match="need low < high") as e:
    Space.from_json(path)
  assert str(e.value).startswith(str(path))


# ------------------------------------------------------------------------------------------------
# Invalid architectures

_ARCH = {"op": "gcn", "layers": 2, "lr": 0.01}


@pytest.mark.parametrize("change, message", [
    ({"op": "gat"}, "op: unknown value 'gat'; valid: ['gcn', '0001', 'None']"),
    ({"op": 1}, "op: unknown value 1"),
    ({"layers": 0}, "layers: value 0 outside [1, 5]"),
    ({"layers": 6}, "layers: value 6 outside [1, 5]"),
    ({"lr": 0.5}, "lr: value 0.5 outside [0.0001, 0.1]"),
    ({"lr": 1e-5}, "lr: value 1e-05 outside"),
    ({"lr": float("nan")}, "lr: value nan outside"),
    ({"layers": float("inf")}, "layers: value inf outside"),
    ({"layers": 2.5}, "layers: expected an integer, got 2.5"),
    ({"layers": "two"}, "layers: expected a number, got 'two'"),
    ({"lr": None}, "lr: expected a number, got None"),
    ({"lr": [0.01]}, "lr: expected a number"),
    ({"layers": None, "lr": None}, "layers: expected a number"),  # first bad choice reported
])
def test_invalid_architecture_rejected(change, message):
  space = Space.from_dict(TOY)
  arch = {**_ARCH, **change}
  for check in (space.validate, space.encode):
    with pytest.raises(SpaceError) as e:
      check(arch)
    assert message in str(e.value)


@pytest.mark.parametrize("missing", [["op"], ["layers", "lr"]])
def test_missing_choice_rejected(missing):
  space = Space.from_dict(TOY)
  arch = {k: v for k, v in _ARCH.items() if k not in missing}
  for check in (space.validate, space.encode):
    with pytest.raises(SpaceError, match="missing choices") as e:
      check(arch)
    assert str(missing) in str(e.value)


def test_encode_columns_rejects_unknown_categorical():
  space = Space.from_dict(TOY)
  with pytest.raises(SpaceError, match="op: unknown value 'gat'"):
    space.encode_columns({"op": ["gcn", "gat"], "layers": [1, 2], "lr": [0.01, 0.01]})


# ------------------------------------------------------------------------------------------------
# Hashing and jit


def test_space_is_a_static_jit_argument():
  space = Space.from_dict(TOY)
  twin = Space.from_dict(space.to_dict())  # equal but a distinct object
  assert twin is not space and twin == space and hash(twin) == hash(space)
  assert len({space, twin, FIXED_SPACES[1]}) == 2

  chex.clear_trace_counter()

  @functools.partial(jax.jit, static_argnums=0)
  @chex.assert_max_traces(n=1)
  def peak(space, theta_E):
    return space.discretize(space.relax(theta_E, 0.5)).sum()

  theta_E = jnp.zeros(space.dim)
  # A one-hot block plus two numbers at the middle of their range (layers=3 is on the grid).
  assert float(peak(space, theta_E)) == pytest.approx(2.0)
  assert float(peak(twin, theta_E + 1.0)) > 2.0  # the second call would raise if it retraced


# ------------------------------------------------------------------------------------------------
# Edge cases that once were bugs. One known limitation stays a strict xfail: a relaxed value
# exactly at a rounding tie may round differently on device (float32) and host (float64);
# `tarch.infer` always discretises on device first, so it never decodes a relaxed point.


@pytest.mark.parametrize("arch", [{"lr": 0.1}, {"lr": 3e-3}])
def test_decode_of_float_bound_is_valid(arch):
  space = Space("s", (Float("lr", 3e-3, 0.1, log=True),))
  space.validate(space.decode(space.encode(arch)))


def test_decode_of_saturated_relaxation_is_valid():
  space = FIXED_SPACES[0]  # TOY, whose last entry is lr in [1e-4, 0.1] on a log scale
  theta_NxE = np.zeros((N, space.dim), np.float32)
  theta_NxE[:, -1] = 20.0
  for enc_E in np.asarray(_discretize(space, _relax(space, theta_NxE, 1.0))):
    space.validate(space.decode(enc_E))


@pytest.mark.xfail(strict=True, reason="discretize rounds in float32, decode in float64")
def test_discretize_and_decode_round_log_integers_alike():
  space = Space("s", (Integer("n", 1, 100, log=True),))
  relaxed_E = space.relax(jnp.array([2.837153911590576], jnp.float32))
  assert space.decode(relaxed_E) == space.decode(space.discretize(relaxed_E))


def test_sample_and_encode_agree_on_log_integers():
  space = Space("s", (Integer("n", 1000, 1001, log=True),))
  enc_NxE = np.asarray(space.sample(jax.random.key(0), 16))  # n=1001 comes out at 0.99995
  np.testing.assert_allclose(np.stack([space.encode(a) for a in space.decode_many(enc_NxE)]),
                             enc_NxE, rtol=0, atol=1e-6)


@pytest.mark.parametrize("values, column", [
    (("1", "2.5"), [1, 2.5]),  # becomes [1.0, 2.5], and "1.0" is not a value
    (("a\x00", "b"), ["a\x00", "b"]),  # numpy strings drop trailing NULs
])
def test_encode_columns_matches_encode_for_any_column(values, column):
  space = Space("s", (Categorical("k", values),))
  np.testing.assert_array_equal(space.encode_columns({"k": column}),
                                np.stack([space.encode({"k": v}) for v in column]))


@pytest.mark.parametrize("low, high, kind", [
    (0, math.inf, "int"), (math.nan, 3, "int"), (0.0, math.inf, "float"),
    (-math.inf, 1.0, "float")])
def test_non_finite_bounds_rejected(low, high, kind):
  with pytest.raises(SpaceError):
    Space.from_dict(_space(_num(kind, low=low, high=high)))
