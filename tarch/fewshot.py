"""Few-shot search simulations: after the zero-shot pick, b = 1 ... N trainings on the new task.

`simulate(static, dyn, data, task)` meta-trains on every task but `task` (`tarch.simulate.fold`,
as a leave-one-task-out fold does) and then lets every method of `METHODS` choose, one after
another, `budget` architectures of the held-out task's pool to "train": a training returns the
table's validation `score` of the architecture (the held-out task's `test_score` is read only to
judge, never by a method). After b trainings a user keeps the best of them by validation score;
its normalised regret on the test scores is the metric at budget b. Methods:

- `tarch`: tarch's zero-shot pick, then `tarch.refine` after each observation;
- `tarch_zero_shot`: the top of tarch's zero-shot ranking, in order, no refinement;
- `best_on_average`: the training tasks' mean-percentile order;
- `rgpe`: the training tasks' percentiles weighted as in RGPE (Feurer et al. 2018, without its
  target-task model): each task's weight is the probability, over bootstrap resamples of the
  observations, that it misranks the fewest observed pairs; the best weighted mean percentile
  not yet trained is next (equal weights, best_on_average, until two observations differ);
- `rank_weighted`: the training tasks weighted by max(0, Kendall's tau with the
  observations)^4, the weighted mean percentile's best next (a simple rank-weighted transfer);
- `gp_bo`: Bayesian optimisation without transfer: a random first architecture, then a
  Gaussian process on the encodings (RBF kernel; lengthscale and noise by marginal likelihood
  over a grid) and expected improvement.
Random search (`random`) is not simulated: its exact expectation, best by validation among b
random trainings, is computed on the host (`tarch.metrics.random_k_expected`).

Refinement variants (`split(..., variants=)`, named e.g. `tarch[prior_strength=3]`) are tarch's
search again with other values of `tarch.refine.RefineConfig`'s dynamic fields, vmapped inside
the same simulation: they share its fold (the trained model, the zero-shot pick and ranking), so
comparing settings of the refinement costs one fold per task and seed, and every difference
between them is the refinement's alone.

Shape letters: T tasks, A architectures, E encoding width, N budget, K methods, H hypotheses,
V refinement variants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from tarch import hparams, refine, simulate
from tarch.infer import InferConfig
from tarch.meta_train import TrainConfig

METHODS = ("tarch", "tarch_zero_shot", "best_on_average", "rgpe", "rank_weighted", "gp_bo")
BOOTSTRAP_SAMPLES = 64  # rgpe's resamples of the observations
GP_LENGTHSCALES = (0.25, 0.5, 1.0, 2.0)  # gp_bo's grid, in units of the median pool distance
GP_NOISES = (1e-3, 1e-2, 0.1, 0.3)  # ... and of its noise variance (standardised scores)


@dataclasses.dataclass(frozen=True)
class Static:
  """The static part of a few-shot simulation (hashable)."""

  fold: simulate.Static
  refine: refine.RefineConfig  # static part
  budget: int  # N trainings per method
  variants: tuple[str, ...] = ()  # names of the refinement variants searched after METHODS


def methods(static: Static) -> tuple[str, ...]:
  """The methods of a simulation's `_K` axes: `METHODS`, then the refinement variants."""
  return METHODS + static.variants


def split(space, net, train: TrainConfig, infer_config: InferConfig,
          refine_config: refine.RefineConfig, budget: int,
          variants: Sequence[tuple[str, refine.RefineConfig]] = ()) -> tuple[Static, dict]:
  """(`Static`, dyn) of full library configs; dyn is `{"train", "infer", "refine"}`, and
  `"refine_variants"` (each dynamic refinement field stacked over the variants) when
  `variants`, (name, config) pairs, are given."""
  if not isinstance(budget, int) or budget < 1:
    raise ValueError(f"the budget must be a positive integer, got {budget!r}")
  fold_static, dyn = simulate.split(space, net, train, infer_config)
  refine_static, refine_dyn = hparams.split(refine_config)
  dyn = {**dyn, "refine": refine_dyn}
  names = tuple(name for name, _ in variants)
  clashes = sorted({n for n in names if names.count(n) > 1 or n in METHODS})
  if clashes:
    raise ValueError(f"refinement variant names must be unique and differ from {METHODS}; "
                     f"repeated or taken: {clashes}")
  if variants:
    splits = [hparams.split(config) for _, config in variants]
    if any(s != refine_static for s, _ in splits):
      raise ValueError("refinement variants may differ from the base refinement only in "
                       f"{refine.RefineConfig.DYNAMIC}")
    dyn["refine_variants"] = jax.tree.map(lambda *x: jnp.stack(x), *[d for _, d in splits])
  return Static(fold_static, refine_static, budget, names), dyn


class Result(flax.struct.PyTreeNode):
  """One few-shot simulation; the `_K` axes follow `methods(static)`, the `_N` axes the
  budget."""

  trained_KxN: jax.Array  # int32 the architecture each method trained at each step
  kept_KxN: jax.Array  # int32 the best by validation score among the first b + 1 trained
  regret_KxN: jax.Array  # float32 normalised regret of the kept architecture
  blend_C: jax.Array  # float32 tarch's zero-shot blend (`tarch.ranker.COMPONENTS`)
  value_net_weight_N: jax.Array  # float32 V's updated share in tarch's refinement at step b
  # (before the b-th training; step 0: the prior)


def _search(first, score_fn, pool_A, val_A, budget: int):
  """`budget` trainings: `first`, then each step the untrained pool member with the highest
  `score_fn(obs_N, y_N, mask_N, step)` (the first `step` observations valid). A pool smaller
  than the budget is exhausted and its last member repeated. Returns (trained `[N]`, aux of
  each step `[N, ...]`)."""
  obs0 = jnp.zeros(budget, jnp.int32)

  def step(carry, b):
    obs_N, trained_A = carry
    mask_N = jnp.arange(budget) < b
    y_N = jnp.where(mask_N, val_A[obs_N], 0.0)
    score_A, aux = score_fn(obs_N, y_N, mask_N, b)
    open_A = pool_A & ~trained_A
    best = jnp.argmax(jnp.where(open_A, score_A, -jnp.inf)).astype(jnp.int32)
    best = jnp.where(open_A.any(), best, obs_N[jnp.maximum(b - 1, 0)])
    pick = jnp.where(b == 0, first, best)
    return (obs_N.at[b].set(pick), trained_A.at[pick].set(True)), aux

  (obs_N, _), aux = jax.lax.scan(step, (obs0, jnp.zeros_like(pool_A)), jnp.arange(budget))
  return obs_N, aux


def _kept(trained_N, val_A):
  """The best by validation among the first b + 1 trained, for each b (ties: the first)."""
  val_N = val_A[trained_N]
  best_N = jax.lax.associative_scan(jnp.maximum, val_N)
  # The first position reaching each prefix's best.
  first_N = jnp.argmax(val_N[None, :] >= best_N[:, None], axis=1)
  return trained_N[first_N]


def _weighted_table(table, weight_T, train_T):
  """The table's weighted mean percentile; equal weights where none is positive."""
  weight_T = jnp.where(train_T, weight_T, 0.0)
  weight_T = jnp.where(weight_T.sum() > 0, weight_T, train_T.astype(jnp.float32))
  return table.scores(weight_T)


def _pairs(y_N, mask_N):
  """`[N, N]` true where observation i scored above observation j (both valid)."""
  return mask_N[:, None] & mask_N[None] & (y_N[:, None] > y_N[None])


def rank_weights(pct_TxN, y_N, mask_N):
  """max(0, Kendall's tau of each task's percentiles with the observations)^4 `[T]`."""
  return jnp.maximum(refine.kendall_tau(pct_TxN, y_N, mask_N), 0.0) ** 4


def rgpe_weights(pct_TxN, y_N, mask_N, key, train_T):
  """RGPE's weights `[T]`: the share of bootstrap resamples of the observations in which each
  training task misranks the fewest pairs (ties split)."""
  n = jnp.maximum(mask_N.sum(), 1)
  budget = y_N.shape[0]
  idx_SxN = jnp.floor(jax.random.uniform(key, (BOOTSTRAP_SAMPLES, budget)) * n).astype(jnp.int32)
  valid_N = mask_N  # resamples of size n: the first n slots of each row

  def loss(idx_N):
    y, p = y_N[idx_N], pct_TxN[:, idx_N]
    above = _pairs(y, valid_N)
    wrong = jnp.where(p[:, :, None] < p[:, None, :], 1.0,
                      jnp.where(p[:, :, None] == p[:, None, :], 0.5, 0.0))
    return jnp.sum(jnp.where(above, wrong, 0.0), (1, 2))

  loss_SxT = jax.vmap(loss)(idx_SxN)
  loss_SxT = jnp.where(train_T, loss_SxT, jnp.inf)
  best_SxT = loss_SxT <= loss_SxT.min(1, keepdims=True)
  return jnp.mean(best_SxT / best_SxT.sum(1, keepdims=True), 0)


def gp_expected_improvement(enc_AxE, unit, obs_N, y_N, mask_N):
  """Expected improvement `[A]` of a GP fitted to the observations (standardised), the RBF
  lengthscale and noise variance chosen by marginal likelihood on the grid."""
  n = jnp.maximum(mask_N.sum(), 1)
  mean = jnp.sum(jnp.where(mask_N, y_N, 0.0)) / n
  sd = jnp.sqrt(jnp.sum(jnp.where(mask_N, (y_N - mean) ** 2, 0.0)) / n)
  y = jnp.where(mask_N, (y_N - mean) / jnp.where(sd > 0, sd, 1.0), 0.0)
  x_NxE = enc_AxE[obs_N]
  sq_NxN = jnp.maximum(jnp.sum((x_NxE[:, None] - x_NxE[None]) ** 2, -1), 0.0)
  both = mask_N[:, None] & mask_N[None]
  eye = jnp.eye(mask_N.shape[0])

  def fit(length, noise):
    k = jnp.where(both, jnp.exp(-0.5 * sq_NxN / length**2), 0.0)
    k = k + eye * jnp.where(mask_N, noise, 1.0)  # padding: unit variance, no correlation
    chol = jnp.linalg.cholesky(k)
    alpha = jax.scipy.linalg.cho_solve((chol, True), y)
    lml = -0.5 * y @ alpha - jnp.sum(jnp.log(jnp.diag(chol)))  # padding adds log 1 = 0
    return lml, chol, alpha

  grid = [(l * unit, s) for l in GP_LENGTHSCALES for s in GP_NOISES]
  lml_G = jnp.stack([fit(l, s)[0] for l, s in grid])
  best = jnp.argmax(jnp.where(jnp.isfinite(lml_G), lml_G, -jnp.inf))
  length = jnp.asarray([l for l, _ in grid])[best]
  noise = jnp.asarray([s for _, s in grid])[best]
  _, chol, alpha = fit(length, noise)
  sq_AxN = jnp.maximum(jnp.sum(enc_AxE**2, -1)[:, None] + jnp.sum(x_NxE**2, -1)[None]
                       - 2 * enc_AxE @ x_NxE.T, 0.0)
  k_AxN = jnp.where(mask_N[None], jnp.exp(-0.5 * sq_AxN / length**2), 0.0)
  mu_A = k_AxN @ alpha
  v_NxA = jax.scipy.linalg.solve_triangular(chol, k_AxN.T, lower=True)
  sigma_A = jnp.sqrt(jnp.maximum(1.0 - jnp.sum(v_NxA**2, 0), 1e-12))
  incumbent = jnp.max(jnp.where(mask_N, y, -jnp.inf))
  z = (mu_A - incumbent) / sigma_A
  return (mu_A - incumbent) * jax.scipy.stats.norm.cdf(z) + sigma_A * jax.scipy.stats.norm.pdf(z)


def _median_distance(enc_AxE, pool_A, max_members: int = 512):
  """Median distance between two of the first `max_members` pool members (1 if all equal)."""
  first = jnp.argsort(~pool_A, stable=True)[:max_members]
  x, ok = enc_AxE[first], pool_A[first]
  sq = jnp.maximum(jnp.sum(x**2, -1)[:, None] + jnp.sum(x**2, -1)[None] - 2 * x @ x.T, 0.0)
  pair = ok[:, None] & ok[None] & ~jnp.eye(x.shape[0], dtype=bool)
  median = jnp.nanmedian(jnp.where(pair, jnp.sqrt(sq), jnp.nan))
  return jnp.where(jnp.isfinite(median) & (median > 0), median, 1.0)


def simulate_fewshot(static: Static, dyn: dict, data: simulate.Data, task: jax.Array) -> Result:
  """Every method's few-shot search on held-out `task` (pure; jit, vmap and shard it)."""
  f = simulate.fold(static.fold, dyn, data, task)
  model, mask_T, pool_A = f.model, f.mask_T, f.pool_A
  table = data.table
  val_A = data.score_TxA[task]  # what a training returns
  enc_AxE = data.train.enc_AxE
  budget = static.budget
  k_search = jax.random.fold_in(jax.random.key(dyn["train"]["seed"] + 1), task)
  k_gp, k_rgpe = jax.random.split(k_search)
  nothing = jnp.float32(0.0)

  # tarch: the zero-shot blend's hypotheses, reweighted by the observations at each step.
  z_F = model.scaler.standardize(data.train.features_TxF[task])
  num_archs = enc_AxE.shape[0]

  def tarch_scores_with(refine_dyn):
    prior = refine.prior(model, z_F, f.value_A, jnp.arange(num_archs), pool_A,
                         refine_dyn["prior_floor"], enc_AxE)

    def scores(obs_N, y_N, mask_N, b):
      score_A, _, _, w_H = refine.acquisition(prior, prior.z_HxX[:, obs_N], y_N, mask_N,
                                               refine_dyn, prior.phi_XxD[obs_N])
      return score_A, w_H[0] / jnp.maximum(w_H.sum(), 1e-30)
    return scores

  tarch_scores = tarch_scores_with(dyn["refine"])

  def fixed(score_A):
    return lambda obs_N, y_N, mask_N, b: (score_A, nothing)

  boa_A = table.scores(mask_T.astype(jnp.float32))

  def rgpe_scores(obs_N, y_N, mask_N, b):
    w_T = rgpe_weights(table.pct_TxA[:, obs_N], y_N, mask_N, jax.random.fold_in(k_rgpe, b),
                       mask_T)
    return _weighted_table(table, w_T, mask_T), nothing

  def rank_weighted_scores(obs_N, y_N, mask_N, b):
    return _weighted_table(table, rank_weights(table.pct_TxA[:, obs_N], y_N, mask_N),
                           mask_T), nothing

  unit = _median_distance(enc_AxE, pool_A)

  def gp_scores(obs_N, y_N, mask_N, b):
    return gp_expected_improvement(enc_AxE, unit, obs_N, y_N, mask_N), nothing

  random_first = jax.random.choice(k_gp, num_archs, p=pool_A / pool_A.sum()).astype(jnp.int32)
  searches = {
      "tarch": (f.tarch_pick, tarch_scores),
      "tarch_zero_shot": (f.tarch_pick, fixed(f.score_A)),
      "best_on_average": (jnp.argmax(jnp.where(pool_A, boa_A, -jnp.inf)).astype(jnp.int32),
                          fixed(boa_A)),
      "rgpe": (jnp.argmax(jnp.where(pool_A, boa_A, -jnp.inf)).astype(jnp.int32), rgpe_scores),
      "rank_weighted": (jnp.argmax(jnp.where(pool_A, boa_A, -jnp.inf)).astype(jnp.int32),
                        rank_weighted_scores),
      "gp_bo": (random_first, gp_scores),
  }
  trained, aux = {}, {}
  for name, (first, score_fn) in searches.items():
    trained[name], aux[name] = _search(first, score_fn, pool_A, val_A, budget)
  trained_KxN = jnp.stack([trained[m] for m in METHODS])
  if static.variants:
    variants_VxN, _ = jax.vmap(lambda d: _search(f.tarch_pick, tarch_scores_with(d), pool_A,
                                                  val_A, budget))(dyn["refine_variants"])
    trained_KxN = jnp.concatenate([trained_KxN, variants_VxN])
  kept_KxN = jax.vmap(lambda t: _kept(t, val_A))(trained_KxN)
  test_A = data.test_TxA[task]
  regret_KxN, _ = simulate.regret_and_percentile(test_A[kept_KxN], test_A, pool_A)
  return Result(trained_KxN=trained_KxN, kept_KxN=kept_KxN, regret_KxN=regret_KxN,
                blend_C=model.blend_C, value_net_weight_N=aux["tarch"])


def simulate_batch(static: Static, dyn: dict, data: simulate.Data, task_N: jax.Array) -> Result:
  """`simulate_fewshot` vmapped over a leading axis of `task_N` and of every leaf of `dyn`."""
  return jax.vmap(simulate_fewshot, in_axes=(None, 0, None, 0))(static, dyn, data, task_N)

