"""Cost-aware evaluation: fronts of (regret, cost) on held-out tasks and their hypervolume.

A cost-aware simulation (`simulate_cost`) is a leave-one-task-out fold (`tarch.simulate.fold`)
plus a cost model trained on the same training tasks (`tarch.cost_model.train`); for each
trade-off weight lambda it lets two methods pick from the held-out task's pool:

- `tarch`: V's ascent at every weight (`tarch.infer.infer_arrays` with `cost_weight`; with the
  blend ranker, the whole pool), the candidates of all weights pooled, and each weight's pick the
  best `score - lambda * predicted log cost` among them, each term in units of its std over the
  pool (as `tarch.infer(..., cost_weights=, pool_PxE=)` picks);
- `best_on_average`: the training tasks' mean percentile minus lambda times their mean log cost,
  in the same units over the pool.

And under a hard budget at the median cost of the held-out pool (`tarch.infer(..., max_cost=)`):
tarch's best candidate whose *predicted* cost is within it, and best_on_average's best pool
member whose mean training cost is within it.

`random` is random search (the best by validation score of `RANDOM_K` trainings) among the pool
members whose actual cost is within each of `RANDOM_BUDGET_QUANTILES` of the pool's costs (it
knows the costs, which tarch and best_on_average predict); each point is at the exact expected
regret and expected log cost of the kept architecture (`tarch.metrics.random_k_probabilities`),
computed on the host, so its hypervolume is that of the expected points, not the expected
hypervolume of a random front.

Every pick is judged by its actual test regret and actual cost on the held-out task. A front's
quality is its hypervolume (`hypervolume`) in the unit square of (1 - normalised regret clipped
to [0, 1], log-cost savings (max - log cost) / (max - min) over the held-out pool), against the
reference point (0, 0): 1 is a single pick with zero regret at the pool's lowest cost.

Shape letters: T tasks, A architectures, L weights, K candidates per weight.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tarch import baselines, cost_model, infer, metrics, simulate
from tarch import runs as runs_lib

METHODS = ("tarch", "best_on_average", "random")
RANDOM_K = 10  # trainings of the random-search baseline
RANDOM_BUDGET_QUANTILES = (0.1, 0.25, 0.5, 0.75, 1.0)  # its cost budgets, as pool quantiles


def pareto_mask(value_N, cost_N) -> np.ndarray:
  """True for the points that no other point beats in both value (higher) and cost (lower)
  while at least matching the other; equal points all stay."""
  value_N, cost_N = np.asarray(value_N, np.float64), np.asarray(cost_N, np.float64)
  no_worse = (value_N[None, :] >= value_N[:, None]) & (cost_N[None, :] <= cost_N[:, None])
  better = (value_N[None, :] > value_N[:, None]) | (cost_N[None, :] < cost_N[:, None])
  return ~np.any(no_worse & better, axis=1)


def hypervolume(quality_N, savings_N) -> float:
  """Area of the union of the rectangles [0, quality] x [0, savings] (both to be maximised, in
  [0, 1]): the part of the unit square the points dominate, reference point (0, 0)."""
  q = np.clip(np.asarray(quality_N, np.float64), 0, 1)
  s = np.clip(np.asarray(savings_N, np.float64), 0, 1)
  if q.size == 0:
    return 0.0
  order = np.argsort(-s, kind="stable")
  best_q = np.maximum.accumulate(q[order])  # the best quality among points saving >= s
  s_sorted = np.append(s[order], 0.0)
  return float(np.sum(best_q * (s_sorted[:-1] - s_sorted[1:])))


@dataclasses.dataclass(frozen=True)
class Static:
  """The static part of a cost-aware simulation."""

  base: simulate.Static
  cost: cost_model.CostConfig
  weights: tuple[float, ...]  # the trade-off weights lambda


class Result(flax.struct.PyTreeNode):
  """One cost-aware simulation's picks (architecture indices into the meta-dataset)."""

  tarch_L: jax.Array  # int32 tarch's pick at each weight
  best_on_average_L: jax.Array  # int32 best_on_average's cost-aware analogue's
  tarch_budget: jax.Array  # int32 tarch's pick under the median-cost budget
  best_on_average_budget: jax.Array  # int32 best_on_average's under it
  budget_log_cost: jax.Array  # float32 the budget: the held-out pool's median log(cost + floor)
  cost_corr: jax.Array  # float32 correlation of predicted and actual log cost over the pool
  task_weight: jax.Array  # float32 the cost model's mix of task-aware and across-task cost


def _picks(score_A, cost_A, member_A, weights_L, reference_A):
  """For each weight, the member with the best score - weight * cost, each in units of its std
  over the reference architectures (ties to the cheaper); `[L]`."""
  unit_s, unit_c = infer.std_unit(score_A, reference_A), infer.std_unit(cost_A, reference_A)
  rank_LxA = jnp.where(member_A[None],
                       score_A[None] / unit_s - weights_L[:, None] * cost_A[None] / unit_c,
                       -jnp.inf)
  # Ties within float rounding (XLA may compute a fused rank twice, not bit for bit alike).
  top_L1 = rank_LxA.max(1, keepdims=True)
  best_LxA = member_A[None] & (rank_LxA >= top_L1 - 1e-6 * (1 + jnp.abs(top_L1)))
  return jnp.argmin(jnp.where(best_LxA, cost_A[None], jnp.inf), axis=1).astype(jnp.int32)


def simulate_cost(static: Static, dyn: dict, data: simulate.Data, task: jax.Array) -> Result:
  """One cost-aware leave-one-task-out fold (pure; jit, vmap and shard it)."""
  f = simulate.fold(static.base, dyn, data, task)
  # The cost model's stream: a fold_in index no task index reaches (the ascent's is the task's).
  k_cost = jax.random.fold_in(jax.random.key(dyn["train"]["seed"]), 2**31 - 1)
  features_TxF, enc_AxE = data.train.features_TxF, data.train.enc_AxE
  cost = cost_model.train(static.cost, features_TxF, enc_AxE, data.log_cost_TxA,
                          data.cost_floor, f.mask_T, k_cost)
  model = f.model.replace(cost_model=cost)
  features_F, pool_A = features_TxF[task], f.pool_A
  predicted_A = cost.predict_log(features_F, enc_AxE)
  weights_L = jnp.asarray(static.weights, jnp.float32)

  # tarch's candidates: every weight's ascent (V alone), or the whole pool (the blend).
  k_infer = jax.random.fold_in(jax.random.key(dyn["train"]["seed"]), task)
  _, _, rows_LxK, valid_LxK = jax.vmap(lambda w: infer.infer_arrays(
      static.base.space, static.base.infer, dyn["infer"], model, features_F, k_infer, enc_AxE,
      pool_A, cost_weight=w))(weights_L)
  ascent_A = jnp.zeros(pool_A.shape, jnp.int32).at[jnp.where(valid_LxK, rows_LxK, 0)].max(
      valid_LxK.astype(jnp.int32)) > 0
  use_blend = model.blend_C[0] < 1
  candidates_A = jnp.where(use_blend | ~ascent_A.any(), pool_A, ascent_A & pool_A)

  # best_on_average's analogue: the training tasks' mean percentile and mean log cost.
  train_T = f.mask_T.astype(jnp.float32)
  pct_A = data.table.scores(train_T)
  known_TxA = jnp.isfinite(data.log_cost_TxA) & f.mask_T[:, None]
  n_A = known_TxA.sum(0)
  mean_cost_A = jnp.where(known_TxA, data.log_cost_TxA, 0.0).sum(0) / jnp.maximum(n_A, 1)
  fill = jnp.sum(jnp.where(n_A > 0, mean_cost_A, 0.0)) / jnp.maximum((n_A > 0).sum(), 1)
  mean_cost_A = jnp.where(n_A > 0, mean_cost_A, fill)  # never evaluated: the average cost

  actual_A = data.log_cost_TxA[task]
  budget = jnp.nanmedian(jnp.where(pool_A, actual_A, jnp.nan))
  under = predicted_A <= budget
  tarch_budget = jnp.where(
      (candidates_A & under).any(), baselines.best_in_pool(f.score_A, candidates_A & under),
      jnp.where((pool_A & under).any(), baselines.best_in_pool(f.score_A, pool_A & under),
                baselines.best_in_pool(-predicted_A, pool_A)))
  boa_under = pool_A & (mean_cost_A <= budget)
  boa_budget = jnp.where(boa_under.any(), baselines.best_in_pool(pct_A, boa_under),
                         baselines.best_in_pool(-mean_cost_A, pool_A))
  return Result(
      tarch_L=_picks(f.score_A, predicted_A, candidates_A, weights_L, pool_A),
      best_on_average_L=_picks(pct_A, mean_cost_A, pool_A, weights_L, pool_A),
      tarch_budget=tarch_budget, best_on_average_budget=boa_budget, budget_log_cost=budget,
      cost_corr=_masked_corr(predicted_A, actual_A, pool_A),
      task_weight=cost.task_weight)


def _masked_corr(x_A, y_A, member_A):
  """Pearson correlation over the members."""
  w = member_A.astype(jnp.float32)
  n = jnp.maximum(w.sum(), 1)
  x = jnp.where(member_A, x_A, 0.0)
  y = jnp.where(member_A, y_A, 0.0)
  dx, dy = (x - (w * x).sum() / n) * w, (y - (w * y).sum() / n) * w
  return (dx * dy).sum() / jnp.sqrt(jnp.maximum((dx**2).sum() * (dy**2).sum(), 1e-30))


def simulate_batch(static: Static, dyn: dict, data: simulate.Data, task_N: jax.Array) -> Result:
  """`simulate_cost` vmapped over a leading axis of `task_N` and of every leaf of `dyn`."""
  return jax.vmap(simulate_cost, in_axes=(None, 0, None, 0))(static, dyn, data, task_N)


# ------------------------------------------------------------------------- host: fronts, volumes


def pool_arrays(ds: runs_lib.MetaDataset, task: int, log_cost_TxA=None) -> dict[str, np.ndarray]:
  """The held-out task's pool: architecture indices, validation and test scores, log costs
  (from `log_cost_TxA`, `cost_model.log_cost_table`'s table, built when not given)."""
  rows = np.flatnonzero(ds.task_R == task)
  table = cost_model.log_cost_table(ds)[0] if log_cost_TxA is None else log_cost_TxA
  arch = ds.arch_R[rows]
  return {"arch": arch, "score": ds.score_R[rows], "test": ds.test_score_R[rows],
          "log_cost": table[task, arch].astype(np.float64)}


def fronts(ds: runs_lib.MetaDataset, task: int, result: Result, weights,
           pool: dict | None = None) -> dict[str, list[dict]]:
  """Each method's points on the held-out task: `{method: [{architecture, regret, log_cost,
  weights (those that picked it) or budget_quantile}]}`, actual regret and log cost (`pool`:
  the task's `pool_arrays`, built when not given)."""
  pool = pool_arrays(ds, task) if pool is None else pool
  where = {a: i for i, a in enumerate(pool["arch"])}

  def point(arch: int, **extra) -> dict:
    i = where[int(arch)]
    return {"architecture": int(arch), "regret": metrics.normalized_regret(pool["test"][i],
                                                                          pool["test"]),
            "log_cost": float(pool["log_cost"][i]), **extra}

  out = {"random": []}
  for method, picks in (("tarch", result.tarch_L), ("best_on_average", result.best_on_average_L)):
    picks = np.asarray(picks).tolist()
    out[method] = [point(a, weights=" ".join(f"{w:g}" for w, b in zip(weights, picks) if b == a))
                   for a in dict.fromkeys(picks)]
  for q in RANDOM_BUDGET_QUANTILES:
    budget = np.quantile(pool["log_cost"], q)
    within = np.flatnonzero(pool["log_cost"] <= budget)
    p = metrics.random_k_probabilities(pool["score"][within], min(RANDOM_K, within.size))
    regret = metrics.normalized_regrets(pool["test"][within], pool["test"])
    out["random"].append({"budget_quantile": q, "regret": float(p @ regret),
                          "log_cost": float(p @ pool["log_cost"][within])})
  return out


def front_hypervolume(points: list[dict], log_cost_P: np.ndarray) -> float:
  """`hypervolume` of a method's points, costs as savings over the held-out pool's range."""
  low, high = float(np.min(log_cost_P)), float(np.max(log_cost_P))
  span = high - low if high > low else 1.0
  return hypervolume([1 - min(max(p["regret"], 0.0), 1.0) for p in points],
                     [(high - p["log_cost"]) / span for p in points])


def check_inputs(ds: runs_lib.MetaDataset, weights) -> tuple[float, ...]:
  """The weights as floats; ValueError when the meta-dataset has no costs or a weight is not
  a finite number >= 0 (checked before any fold runs)."""
  if not ds.has_cost:
    raise ValueError("cost-aware evaluation needs a meta-dataset with a `cost` column (see "
                     "README); this one has none")
  weights = tuple(float(w) for w in weights)
  if not weights or any(not np.isfinite(w) or w < 0 for w in weights):
    raise ValueError(f"cost_weights must be one or more finite weights >= 0, got {weights}")
  return weights


def program(ds: runs_lib.MetaDataset, static: simulate.Static, cost: cost_model.CostConfig,
            weights) -> "sweep.Program":
  """The cost-aware fold as a `tarch.sweep.Program` (what `experiments.loto` runs with
  `--config.cost_weights`)."""
  from tarch import sweep  # sweep runs programs of this module too

  weights = check_inputs(ds, weights)

  def split(train, infer_config):
    base, dyn = simulate.split(ds.space, static.value_net, train, infer_config)
    return Static(base=base, cost=cost, weights=weights), dyn

  return sweep.Program(name="loto_cost", split=split, batch=_BATCH, result_type=Result)


_BATCH = jax.jit(simulate_batch, static_argnums=0)


def evaluate_outcomes(ds: runs_lib.MetaDataset, outcomes, weights) -> tuple[list[dict], dict]:
  """Rows of `loto_pareto.csv` (one per task x method x point, and the budget picks) and the
  `loto_pareto.json` content, from finished cost-aware simulations."""
  rows, volumes = [], {m: [] for m in METHODS}
  budget = {m: [] for m in ("tarch", "best_on_average", "random")}
  over = {m: [] for m in ("tarch", "best_on_average")}
  log_cost_TxA = cost_model.log_cost_table(ds)[0]
  for o in outcomes:
    task, r = o.task, o.result
    pool = pool_arrays(ds, task, log_cost_TxA)
    for method, points in fronts(ds, task, r, weights, pool).items():
      volumes[method].append(front_hypervolume(points, pool["log_cost"]))
      rows += [{"task": ds.task_names[task], "method": method, "kind": "front", **p}
               for p in points]
    limit = float(r.budget_log_cost)
    where = {a: i for i, a in enumerate(pool["arch"])}
    for method, arch in (("tarch", int(r.tarch_budget)),
                         ("best_on_average", int(r.best_on_average_budget))):
      i = where[arch]
      regret = metrics.normalized_regret(pool["test"][i], pool["test"])
      budget[method].append(regret)
      over[method].append(float(pool["log_cost"][i] > limit + 1e-6))
      rows.append({"task": ds.task_names[task], "method": method, "kind": "budget",
                   "architecture": arch, "regret": regret, "log_cost": float(pool["log_cost"][i])})
    within = np.flatnonzero(pool["log_cost"] <= limit + 1e-6)
    p = metrics.random_k_probabilities(pool["score"][within], min(RANDOM_K, within.size))
    budget["random"].append(float(p @ metrics.normalized_regrets(pool["test"][within],
                                                                 pool["test"])))

  def paired(a, b):
    d = np.asarray(a) - np.asarray(b)
    return {"mean": float(d.mean()),
            "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None}

  summary = {
      "methods": {m: {"mean_hypervolume": float(np.mean(v)), "num_tasks": len(v)}
                  for m, v in volumes.items()},
      "tarch_minus_best_on_average_hypervolume": paired(volumes["tarch"],
                                                        volumes["best_on_average"]),
      "budget": {
          "budget": "the held-out pool's median cost",
          "methods": {m: {"mean_normalized_regret": float(np.mean(v)),
                          **({"over_budget": float(np.mean(over[m]))} if m in over else {})}
                      for m, v in budget.items()},
          "tarch_minus_best_on_average": paired(budget["tarch"], budget["best_on_average"]),
      },
      "weights": list(weights),
      "cost_model": {"mean_corr": float(np.mean([float(o.result.cost_corr) for o in outcomes])),
                     "mean_task_weight": float(np.mean([float(o.result.task_weight)
                                                        for o in outcomes]))},
  }
  return rows, summary


def plot_fronts(rows: list[dict], path: str, max_tasks: int = 4) -> None:
  """A PNG of each method's front (regret against log cost) on the first `max_tasks` tasks."""
  from tarch import report

  plt = report._pyplot()
  tasks = list(dict.fromkeys(r["task"] for r in rows))[:max_tasks]
  fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.6), squeeze=False)
  markers = {"tarch": "o-", "best_on_average": "s--", "random": "^:"}
  for ax, task in zip(axes[0], tasks):
    for method in METHODS:
      pts = sorted((r["log_cost"], r["regret"]) for r in rows
                   if r["task"] == task and r["method"] == method and r["kind"] == "front")
      if pts:
        ax.plot(*zip(*pts), markers[method], label=method, ms=4)
    ax.set_title(task, fontsize=9)
    ax.set_xlabel("log cost")
    ax.set_ylabel("normalised regret (axis cut at 1.5)")
    ax.set_ylim(-0.05, 1.5)  # beyond a median pick's regret (1), the hypervolume counts nothing
  axes[0][0].legend(fontsize=8)
  report._save(fig, path)
