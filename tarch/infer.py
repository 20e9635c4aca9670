"""`tarch.infer`: architecture inference for a new task by gradient ascent through V.

For a task's meta-features, many random relaxed architectures (softmax logits per categorical
choice, a pre-sigmoid scalar per numeric choice) are ascended on the trained value network with
`jax.grad` (the network fixed), all restarts in one `jax.vmap`, while the softmax temperature is
annealed toward one-hot. By default (`InferConfig.ascent="members"`) each ensemble member
ascends its own V from its share of the restarts: a member costs 1/M of the ensemble per step,
and the members' optima are as diverse as the members; with "ensemble" every restart ascends
the ensemble mean (minus `pessimism` member standard deviations). Given a support set of
architectures (e.g. the training table), the objective adds a pull toward them: the log of
their kernel density (`_support_objective`), which keeps the ascent where V has evidence. Either
way the candidates are ranked by the ensemble. The optima are
discretised (or, with a candidate pool, replaced by their nearest pool members, the ascent having
been restricted to the categorical values the pool uses), deduplicated, re-scored by the
ensemble alone and returned best first.

When `tarch.meta_train.fit` found on held-out training tasks that V should not rank alone but
blended with the training tasks' own results (task kernels, best_on_average; `tarch.ranker`,
`ValueModel.ranker` "blend"), there is no ascent: the pool, or without one the architectures of
the training table, is ranked by that blend.

Everything from the random starts to the top-k indices is one jit-compiled function; only
decoding the winners to dictionaries happens on the host.

Shape letters: R restarts, C candidates, E encoding width, F meta-features, P pool members,
K returned.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tarch import hparams
from tarch import runs as runs_lib
from tarch import value_net as vn
from tarch.meta_train import ValueModel
from tarch.space import Space


@dataclasses.dataclass(frozen=True)
class InferConfig:
  """Settings of the ascent. The fields of `DYNAMIC` are traced arrays in the compiled inference
  (`tarch.hparams.split`), the others (shapes) static."""

  DYNAMIC: ClassVar[tuple[str, ...]] = (
      "learning_rate", "init_scale", "temperature_start", "temperature_end", "pessimism",
      "support_weight")

  num_restarts: int = 64  # R random starts, ascended side by side
  num_steps: int = 200  # ascent steps per restart
  learning_rate: float = 0.1  # Adam step size on the relaxed parameters
  init_scale: float = 1.0  # std of the random initial logits
  temperature_start: float = 1.0  # softmax temperature at the first step
  temperature_end: float = 0.1  # ... annealed geometrically to this at the last step
  top_k: int = 10  # architectures returned
  pool_neighbours: int = 8  # with a pool: nearest members of each optimum re-scored by V
  pessimism: float = 0.0  # candidates are ranked by ensemble mean - pessimism * member std
  support_weight: float = 0.3  # weight of the support set's log-density in the ascent
  # objective, in standard deviations of V over the support (see `_support_objective`)
  support_members: int = 256  # the density is over this many support members, V's best
  ascent: str = "members"  # "members": each ensemble member ascends its own V from its share
  # of the restarts; "ensemble": every restart ascends the ensemble's objective (M times the
  # work per step). Either way the candidates are ranked by the ensemble.

  def __post_init__(self):
    checks = {
        "num_restarts >= 1": self.num_restarts >= 1, "num_steps >= 1": self.num_steps >= 1,
        "learning_rate > 0": self.learning_rate > 0, "init_scale >= 0": self.init_scale >= 0,
        "temperature_start > 0": self.temperature_start > 0,
        "temperature_end > 0": self.temperature_end > 0, "top_k >= 1": self.top_k >= 1,
        "pool_neighbours >= 1": self.pool_neighbours >= 1, "pessimism >= 0": self.pessimism >= 0,
        "support_weight >= 0": self.support_weight >= 0,
        "support_members >= 1": self.support_members >= 1,
        "ascent in ('members', 'ensemble')": self.ascent in ("members", "ensemble"),
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
      raise ValueError(f"invalid InferConfig: need {', '.join(failed)}; got {self}")


@dataclasses.dataclass(frozen=True)
class Inference:
  """The result of `infer`, best first."""

  architectures: list[dict[str, Any]]  # decoded architectures
  encodings: np.ndarray  # float32 [K, E]
  predicted: np.ndarray  # float32 [K] what they were ranked by (`ValueModel.score`): V's
  # ensemble mean minus `pessimism` member standard deviations, or the blend's score
  pool_indices: np.ndarray | None  # int [K] rows of the candidate pool, when one was given
  ranker: str = "value_net"  # the model's ranker (`ValueModel.ranker`): "value_net" or "blend"
  predicted_cost: np.ndarray | None = None  # float64 [K] predicted costs (with `max_cost`)


def _ascend(objective, infer_config: InferConfig, dyn, theta_E, bias_E, relax):
  """Adam ascent of `objective(enc_E)` over one relaxed architecture, the softmax temperature
  annealed geometrically; returns the relaxed optimum `[E]`.

  `bias_E` is added to the parameters before relaxing: -1e9 on categorical values that are not
  allowed (no pool member uses them), 0 elsewhere.
  """
  log_t = jnp.linspace(jnp.log(dyn["temperature_start"]), jnp.log(dyn["temperature_end"]),
                       infer_config.num_steps)
  optimizer = optax.adam(dyn["learning_rate"])

  def step(carry, log_temperature):
    theta, opt_state = carry
    grad = jax.grad(lambda th: -objective(relax(th + bias_E, jnp.exp(log_temperature))))(theta)
    updates, opt_state = optimizer.update(grad, opt_state, theta)
    return (optax.apply_updates(theta, updates), opt_state), None

  (theta_E, _), _ = jax.lax.scan(step, (theta_E, optimizer.init(theta_E)), log_t)
  return relax(theta_E + bias_E, dyn["temperature_end"])


def _first_occurrence(same_RxR: jax.Array) -> jax.Array:
  """True for candidates equal to no earlier one, given pairwise equality (dedup inside jit)."""
  return ~jnp.tril(same_RxR, k=-1).any(axis=1)


def infer_arrays(space: Space, infer_config: InferConfig, dyn: dict, model: ValueModel,
                 features_F: jax.Array, key: jax.Array, pool_PxE=None, pool_mask_P=None,
                 support_SxE=None, support_mask_S=None, cost_weight=None):
  """The pure core of `infer` (jit it, or call it inside a compiled simulation).

  `infer_config` is the static part and `dyn` the dynamic part of an `InferConfig`
  (`tarch.hparams.split`). The pool and the support set are given as encodings with a member
  mask, so that tasks whose pools differ share one shape (and one compiled program).

  With a `cost_weight` lambda (a scalar, may be traced; needs `model.cost_model`), the ascent
  and the ranking maximise `V - lambda * predicted log cost`, each in units of its standard
  deviation over a reference set of architectures (`tradeoff_units`: the pool, else the random
  starts discretised), so that lambda is unit-free: 1 trades one std of value for one std of
  log cost. Lambda 0 gives exactly the plain result.

  Returns:
    (candidate encodings `[K, E]`, their values `[K]` (V's, without the cost term), their pool
    rows `[K]` (-1 without a pool), valid `[K]`), best first; invalid entries (duplicates, too
    few members) last.
  """
  r = infer_config.num_restarts
  theta_RxE = dyn["init_scale"] * jax.random.normal(key, (r, space.dim))
  if pool_PxE is not None and pool_mask_P is None:
    pool_mask_P = jnp.ones(pool_PxE.shape[0], bool)
  bias_E = (jnp.zeros((space.dim,)) if pool_PxE is None
            else _pool_bias(space, pool_PxE, pool_mask_P))
  fused = vn.fuse_members(model.config, model.params)  # one wide network: fast per step
  g_MxD = model.task_embeddings(features_F)  # constant during the ascent
  pessimism = dyn["pessimism"]

  def value_N(enc_NxE):
    return vn.lower_bound(vn.apply_fused(model.config, fused, g_MxD, enc_NxE), pessimism)

  rate, cost_N = 0.0, lambda enc_NxE: jnp.zeros(enc_NxE.shape[0])
  if cost_weight is not None:
    cost_N = lambda enc_NxE: model.cost_model.predict_z(features_F, enc_NxE)
    value_unit, cost_unit = tradeoff_units(space, infer_config, dyn, model, features_F, key,
                                           pool_PxE, pool_mask_P)
    rate = cost_weight * value_unit / cost_unit  # the cost term in V's units

  support = None
  if support_SxE is not None:
    if support_mask_S is None:
      support_mask_S = jnp.ones(support_SxE.shape[0], bool)
    support = _support_objective(infer_config, value_N, support_SxE, support_mask_S)

  def ascend_all(objective, theta_NxE):
    return jax.vmap(lambda theta_E: _ascend(
        objective, infer_config, dyn, theta_E, bias_E, space.relax))(theta_NxE)

  if infer_config.ascent == "ensemble":
    objective = lambda enc_E: value_N(enc_E[None])[0] - rate * cost_N(enc_E[None])[0]
    if support is not None:
      objective = functools.partial(_with_support, objective, support, dyn["support_weight"])
    relaxed_RxE = ascend_all(objective, theta_RxE)
  else:
    # Each member ascends its own V from its share of the starts (ceil(R / M) each): M times
    # less work per step than the ensemble mean, and optima as diverse as the members are;
    # every candidate is then ranked by the ensemble below.
    m = g_MxD.shape[0]
    per = -(-r // m)
    theta_MxNxE = dyn["init_scale"] * jax.random.normal(key, (m, per, space.dim))
    net = vn.ValueNet(model.config)
    scale_M = None
    if support is not None:  # each member's spread over the whole support, as the ensemble's
      value_MxS = vn.apply_fused(model.config, fused, g_MxD, support_SxE)
      scale_M = jnp.sqrt(jnp.var(value_MxS, axis=1, where=support_mask_S)) + 1e-6

    def member(params, g_D, scale, theta_NxE):
      objective = lambda enc_E: (net.apply(params, g_D, enc_E, method=vn.ValueNet.value)
                                 - rate * cost_N(enc_E[None])[0])
      if support is not None:
        objective = functools.partial(_with_support, objective, support, dyn["support_weight"],
                                      scale=scale)
      return ascend_all(objective, theta_NxE)

    relaxed_RxE = jax.vmap(member)(model.params, g_MxD, scale_M, theta_MxNxE).reshape(
        -1, space.dim)
    r = relaxed_RxE.shape[0]

  if pool_PxE is None:
    cand_CxE = space.discretize(relaxed_RxE)
    ids_CxE = jnp.round(cand_CxE * 1e4).astype(jnp.int32)  # floats equal to 1e-4 of range
    unique_C = _first_occurrence(jnp.all(ids_CxE[:, None] == ids_CxE[None, :], -1))
    rows_C = jnp.full((r,), -1)
  else:
    # The pool members nearest to each optimum in encoding space (for one-hot blocks, those on
    # which the relaxed optimum puts the most probability), all re-scored by the ensemble below.
    dist_RxP = (jnp.sum(pool_PxE**2, -1)[None] - 2 * relaxed_RxE @ pool_PxE.T)
    dist_RxP = jnp.where(pool_mask_P, dist_RxP, jnp.inf)
    n = min(infer_config.pool_neighbours, pool_PxE.shape[0])
    neg_dist, rows_RxN = jax.lax.top_k(-dist_RxP, n)
    rows_C = rows_RxN.reshape(-1)
    cand_CxE = pool_PxE[rows_C]
    unique_C = (_first_occurrence(rows_C[:, None] == rows_C[None, :])
                & jnp.isfinite(neg_dist.reshape(-1)))

  values_C = value_N(cand_CxE)
  rank_C = jnp.where(unique_C, values_C - rate * cost_N(cand_CxE), -jnp.inf)
  top_rank, top = jax.lax.top_k(rank_C, min(infer_config.top_k, rank_C.shape[0]))
  valid_K = jnp.isfinite(top_rank)
  return cand_CxE[top], jnp.where(valid_K, values_C[top], -jnp.inf), rows_C[top], valid_K


def tradeoff_units(space: Space, infer_config: InferConfig, dyn: dict, model: ValueModel,
                   features_F: jax.Array, key: jax.Array, pool_PxE=None, pool_mask_P=None):
  """(value unit, cost unit) of the cost-aware trade-off: the standard deviations of V (the
  ensemble's, with `pessimism`) and of the predicted standardised log cost over a reference set
  of architectures: the pool's members, else `infer_arrays`' random starts (same key)
  discretised. Neither depends on the weights, so a weight means the same in every call."""
  if pool_PxE is None:
    theta_RxE = dyn["init_scale"] * jax.random.normal(key, (infer_config.num_restarts, space.dim))
    reference_NxE = space.discretize(space.relax(theta_RxE, 1.0))
    reference_N = jnp.ones(reference_NxE.shape[0], bool)
  else:
    reference_NxE = pool_PxE
    reference_N = jnp.ones(pool_PxE.shape[0], bool) if pool_mask_P is None else pool_mask_P
  value_N = vn.lower_bound(vn.apply_embedded(model.config, model.params,
                                             model.task_embeddings(features_F), reference_NxE),
                           dyn["pessimism"])
  cost_N = model.cost_model.predict_z(features_F, reference_NxE)
  return std_unit(value_N, reference_N), std_unit(cost_N, reference_N)


def std_unit(x_N, member_N):
  """The std over the members, 1 where it is below 1e-6 (a constant: no unit to speak of)."""
  std = jnp.sqrt(jnp.var(x_N, where=member_N))
  return jnp.where(std > 1e-6, std, 1.0)


_infer_jit = jax.jit(infer_arrays, static_argnames=("space", "infer_config"))


@functools.lru_cache(maxsize=64)
def _split(config: InferConfig):
  """`hparams.split` of a config, its arrays made once per config rather than on every call."""
  return hparams.split(config)


def _with_support(value, support, weight, enc_E, scale=None):
  """The ascent objective with the support term: `value / scale + weight * log_density`
  (`scale`: default the support's, `_support_objective`)."""
  support_SxE, member_S, value_scale, bandwidth = support
  # |s - e|^2 as |s|^2 - 2 s.e + |e|^2: one matrix-vector product, not an [S, E] difference.
  sq_S = jnp.sum(support_SxE**2, -1) - 2 * support_SxE @ enc_E + jnp.sum(enc_E**2)
  log_density = jax.nn.logsumexp(jnp.where(member_S, -0.5 * sq_S / bandwidth**2, -jnp.inf))
  return value(enc_E) / (value_scale if scale is None else scale) + weight * log_density


def _support_objective(infer_config: InferConfig, value_N, support_SxE, member_S):
  """`(support_SxE, member_S, value_scale, bandwidth)` of the ascent's support term.

  V is trustworthy only near the architectures its training (or the pool) evaluated; its
  continuous optimum can lie where none was, and nothing that lies there need be good. So the
  ascent maximises `V / value_scale + support_weight * log p(a)`, where p is a Gaussian kernel
  density of the support set, `value_scale` (V's standard deviation over the support set) makes
  the weight unit-free, and the bandwidth is the median distance between a member and its
  nearest other member: smooth enough that V, not the nearest member, steers the ascent across
  the region the members cover. Far from every member the log-density falls off like
  -d^2 / (2 bandwidth^2), a pull back toward them. The candidates are then ranked by V alone.

  Only the `support_members` members V values most enter the density (an optimum can only be
  near good members, and each ascent step costs a distance to every member in the density), so
  a support set of many thousands costs no more per step than one of a few hundred.
  """
  value_S = value_N(support_SxE)
  n = jnp.maximum(member_S.sum(), 1)
  mean = jnp.sum(jnp.where(member_S, value_S, 0.0)) / n
  var = jnp.sum(jnp.where(member_S, (value_S - mean) ** 2, 0.0)) / n
  scale = jnp.sqrt(var) + 1e-6
  k = min(infer_config.support_members, support_SxE.shape[0])
  top_values, top = jax.lax.top_k(jnp.where(member_S, value_S, -jnp.inf), k)
  return (support_SxE[top], jnp.isfinite(top_values), scale,
          _neighbour_distance(support_SxE, member_S))


def _neighbour_distance(points_SxE: jax.Array, member_S: jax.Array,
                        max_members: int = 1024) -> jax.Array:
  """Median distance from a member to its nearest distinct other member (among the first
  `max_members` members). 1 if all members are equal."""
  first = jnp.argsort(~member_S, stable=True)[:max_members]
  x, ok = points_SxE[first], member_S[first]
  d2 = jnp.sum(x**2, -1)[:, None] + jnp.sum(x**2, -1)[None] - 2 * x @ x.T
  d2 = jnp.where((d2 > 1e-10) & ok[None], d2, jnp.inf)  # the member itself and its duplicates
  nearest = jnp.sqrt(d2.min(1))
  median = jnp.nanmedian(jnp.where(jnp.isfinite(nearest) & ok, nearest, jnp.nan))
  return jnp.where(jnp.isnan(median), 1.0, median)


def _pool_bias(space: Space, pool_PxE: jax.Array, member_P: jax.Array) -> jax.Array:
  """0 where some pool member takes a categorical value (and on numeric entries), else -1e9.

  Restricting the ascent to values the pool uses keeps it from converging on an optimum that no
  pool member is near (e.g. a benchmark task that was only run with a subset of operations).
  """
  used_E = jnp.where(member_P[:, None], pool_PxE, 0.0).max(axis=0) > 0
  numeric_E = np.zeros(space.dim, bool)
  numeric_E[list(space.numeric_dims)] = True
  return jnp.where(used_E | numeric_E, 0.0, -1e9)


def _encodings(name: str, enc, space: Space) -> jax.Array | None:
  """`enc` as a float32 array `[N > 0, E]`, or None; ValueError naming `name` otherwise."""
  if enc is None:
    return None
  enc = jnp.asarray(enc, jnp.float32)
  if enc.ndim != 2 or enc.shape[1] != space.dim or enc.shape[0] == 0:
    raise ValueError(f"{name} must have shape [N>0, {space.dim}], got {enc.shape}")
  if not np.all(np.isfinite(np.asarray(enc))):
    raise ValueError(f"{name} encodings must be finite")
  return enc


def infer(model: ValueModel, space: Space, features_F, key: jax.Array,
          config: InferConfig = InferConfig(), pool_PxE=None, support_SxE=None, *,
          cost_weights=None, max_cost: float | None = None) -> Inference | ParetoFront:
  """Infers the best architectures for a task from its meta-features alone.

  Args:
    model: a trained value-network ensemble (`tarch.meta_train.fit` or `restore`).
    space: the search space the model was trained on.
    features_F: the task's raw meta-features (same columns as the training tasks.csv).
    key: a `jax.random.key` for the random starts.
    config: ascent settings.
    pool_PxE: optional encodings of the allowed architectures; then only pool members are
      returned (each ascent optimum is projected onto its nearest member).
    support_SxE: optional encodings of the architectures V may be trusted near (e.g. those of
      its training table, `ds.enc_AxE`); the ascent is pulled toward them with weight
      `config.support_weight`. Default: no support term (with a pool, the optima are
      projected onto its members anyway).
    cost_weights: optional unit-free weights lambda >= 0 of the predicted log cost (needs a
      model fitted on a meta-dataset with a `cost` column): for each, the ascent maximises
      `V - lambda * cost` (`infer_arrays`), all weights in one vmapped program, and the result
      is the Pareto front of the distinct picks (`ParetoFront`).
    max_cost: optional hard budget in the table's cost units: the returned architectures are
      the best predicted ones whose predicted cost is at most it, among the candidates of the
      ascents at `DEFAULT_COST_WEIGHTS` (or at `cost_weights`, when given).

  Returns:
    An `Inference` with up to `config.top_k` distinct architectures, best predicted first
    (with `max_cost`, each with its predicted cost); with `cost_weights` and no `max_cost`, a
    `ParetoFront`.
  """
  features_F = jnp.asarray(checked_features(model, features_F))
  if (model.config.encoding_dim, model.config.numeric_dims) != (space.dim, space.numeric_dims):
    raise ValueError(
        f"the model was trained on an encoding of width {model.config.encoding_dim} with numeric "
        f"entries {list(model.config.numeric_dims)}, but space {space.name!r} has width "
        f"{space.dim} with numeric entries {list(space.numeric_dims)}")
  pool_PxE = _encodings("pool", pool_PxE, space)
  support_SxE = _encodings("support", support_SxE, space)
  if cost_weights is not None or max_cost is not None:
    return _cost_aware(model, space, features_F, key, config, pool_PxE, support_SxE,
                       cost_weights, max_cost)
  if model.ranker == "blend":
    return _rank_by_blend(model, space, features_F, config, pool_PxE)
  static, dyn = _split(config)
  enc, values, rows, valid = jax.device_get(_infer_jit(
      space, static, dyn, model, features_F, key, pool_PxE, None, support_SxE, None))
  enc, values, rows = enc[valid], values[valid], rows[valid]
  return Inference(
      architectures=space.decode_many(enc), encodings=enc, predicted=values,
      pool_indices=rows if pool_PxE is not None else None)


# The trade-off weights `max_cost` searches by default: from the plain pick (0) to picks that
# weigh a std of log cost 16 times a std of value.
DEFAULT_COST_WEIGHTS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclasses.dataclass(frozen=True)
class ParetoFront:
  """The result of `infer(..., cost_weights=...)`: the distinct picks of the weights that no
  other pick beats in both predicted value and predicted cost, cheapest first."""

  architectures: list[dict[str, Any]]
  encodings: np.ndarray  # float32 [K, E]
  predicted: np.ndarray  # float32 [K] predicted value (`ValueModel.score`), rising with cost
  predicted_cost: np.ndarray  # float64 [K] predicted cost, in the table's units
  cost_weights: list[tuple[float, ...]]  # the weights whose pick each one is
  pool_indices: np.ndarray | None  # int [K] rows of the candidate pool, when one was given
  ranker: str = "value_net"


def _checked_weights(model: ValueModel, cost_weights) -> np.ndarray:
  if model.cost_model is None:
    raise ValueError("cost-aware inference needs a cost model, and this model has none: it was "
                     "fitted on a meta-dataset without a `cost` column (see README)")
  weights = np.asarray(cost_weights, np.float64).reshape(-1)
  if weights.size == 0 or not np.all(np.isfinite(weights)) or np.any(weights < 0):
    raise ValueError(f"cost_weights must be one or more finite weights >= 0, got {cost_weights!r}")
  return weights.astype(np.float32)


def _cost_aware(model, space, features_F, key, config, pool_PxE, support_SxE, cost_weights,
                max_cost):
  """The candidates of every weight's ascent (or, with the blend ranker, every candidate the
  blend ranks; it has no ascent, so no support term) pooled, then each weight's pick chosen
  from the pool in the units of `tradeoff_units`: one candidate set and one unit for all
  weights, so that a larger weight never picks a costlier architecture. `cost_weights=[0]` is
  the plain pick; among several weights, weight 0 picks the best predicted value that any
  weight's ascent found."""
  weights_L = _checked_weights(model, DEFAULT_COST_WEIGHTS if cost_weights is None
                               else cost_weights)
  if max_cost is not None and not (np.isfinite(max_cost) and max_cost >= 0):
    raise ValueError(f"max_cost must be a finite cost >= 0, got {max_cost!r}")
  cost_lib = model.cost_model
  if model.ranker == "blend":  # no ascent: the blend's candidates are the units' reference
    enc = _blend_candidates(model, pool_PxE)
    values = np.asarray(model.score(features_F, enc, config.pessimism))
    rows = np.arange(len(enc))
    cost = cost_lib.predict(features_F, enc)
    everyone = jnp.ones(len(enc), bool)
    units = (float(std_unit(jnp.asarray(values), everyone)),
             float(std_unit(jnp.asarray(np.log(cost + float(cost_lib.floor))), everyone)))
  else:
    static, dyn = _split(config)
    (enc, values, rows, valid), units = jax.device_get(_infer_weights_jit(
        space, static, dyn, model, features_F, key, pool_PxE, support_SxE,
        jnp.asarray(weights_L)))
    enc, values, rows = enc[valid], values[valid], rows[valid]
    index = _distinct(enc)
    enc, values, rows = enc[index], values[index], rows[index]
    cost = cost_lib.predict(features_F, enc)
    units = (float(units[0]), float(units[1]) * float(cost_lib.std))  # z units to log units
  log_cost = np.log(cost + float(cost_lib.floor))
  has_pool = pool_PxE is not None
  if max_cost is None:
    # Each weight's pick: the best value - weight * log cost, each in its unit; ties to the
    # cheaper candidate.
    rank_LxN = (values[None] / units[0]
                - weights_L[:, None].astype(np.float64) * log_cost[None] / units[1])
    pick_L = np.array([np.lexsort((cost, -rank))[0] for rank in rank_LxN])
    picks = list(dict.fromkeys(pick_L.tolist()))  # distinct, in weight order
    from tarch import pareto  # pareto builds on this module
    keep = [i for i, ok in zip(picks, pareto.pareto_mask(values[picks], cost[picks])) if ok]
    keep = sorted(keep, key=lambda i: (cost[i], -values[i]))  # cheapest first
    return ParetoFront(architectures=space.decode_many(enc[keep]), encodings=enc[keep],
                       predicted=values[keep], predicted_cost=cost[keep],
                       cost_weights=[tuple(float(w) for w in weights_L[pick_L == i]) for i in keep],
                       pool_indices=rows[keep] if has_pool else None, ranker=model.ranker)
  within = np.flatnonzero(cost <= max_cost)
  if within.size == 0:
    raise ValueError(f"no candidate is predicted to cost at most max_cost={max_cost:g}: the "
                     f"cheapest found is predicted at {cost.min():.4g}")
  top = within[np.argsort(-values[within], kind="stable")][:config.top_k]
  return Inference(architectures=space.decode_many(enc[top]), encodings=enc[top],
                   predicted=values[top], pool_indices=rows[top] if has_pool else None,
                   ranker=model.ranker, predicted_cost=cost[top])


def _distinct(enc_NxE: np.ndarray) -> np.ndarray:
  """Indices of the first occurrence of each distinct encoding (to 1e-4 of range)."""
  keys = [np.round(e * 1e4).astype(np.int64).tobytes() for e in enc_NxE]
  return np.array(sorted({k: i for i, k in reversed(list(enumerate(keys)))}.values()), np.int64)


def _infer_weights(space, infer_config, dyn, model, features_F, key, pool_PxE, support_SxE,
                   weights_L):
  """`infer_arrays` at every cost weight, one vmapped ascent (`[L, K, ...]` outputs), and the
  trade-off's units (`tradeoff_units`)."""
  out = jax.vmap(lambda w: infer_arrays(space, infer_config, dyn, model, features_F, key,
                                        pool_PxE, None, support_SxE, None, cost_weight=w)
                 )(weights_L)
  return out, tradeoff_units(space, infer_config, dyn, model, features_F, key, pool_PxE)


_infer_weights_jit = jax.jit(_infer_weights, static_argnames=("space", "infer_config"))


def checked_features(model: ValueModel, features_F) -> np.ndarray:
  """A task's raw meta-features as float32 `[F]`, checked in float64 (before the cast could
  round or overflow them): the model's count, finite, within float32's safe range."""
  raw_F = np.asarray(features_F, np.float64)
  if raw_F.shape != model.scaler.mean_F.shape:
    raise ValueError(f"expected {model.scaler.mean_F.shape[0]} meta-features, got shape "
                     f"{raw_F.shape}")
  bad = ~np.isfinite(raw_F) | (np.abs(raw_F) > runs_lib.FLOAT32_LIMIT)
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"meta-feature {i} is {raw_F[i]!r}: meta-features must be finite and within "
                     f"+-{runs_lib.FLOAT32_LIMIT:.4g} (tarch computes in float32)")
  return raw_F.astype(np.float32)


def _rank_by_blend(model: ValueModel, space: Space, features_F, config: InferConfig,
                   pool_PxE) -> Inference:
  """The pool (or the training table's architectures) ranked by the model's blend."""
  candidates = _blend_candidates(model, pool_PxE)
  scores = np.asarray(model.score(features_F, candidates, config.pessimism))
  top = np.argsort(-scores, kind="stable")[:config.top_k]
  enc = candidates[top]
  return Inference(architectures=space.decode_many(enc), encodings=enc, predicted=scores[top],
                   pool_indices=top if pool_PxE is not None else None, ranker=model.ranker)


def _blend_candidates(model: ValueModel, pool_PxE) -> np.ndarray:
  """What the blend ranks: the pool, or the architectures some training task evaluated."""
  if pool_PxE is not None:
    return np.asarray(pool_PxE)
  table = model.kernel.table
  seen_A = np.asarray((table.evaluated_TxA & model.kernel.train_T[:, None]).any(0))
  return np.asarray(table.enc_AxE)[seen_A]
