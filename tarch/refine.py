"""`tarch.refine`: the next architectures to train on a new task, given the first results on it.

Zero-shot, tarch ranks candidates by a blend (`tarch.ranker`) of V and the training tasks'
results: task kernels at three bandwidths and best_on_average, each a weighted mean of the
training tasks' percentiles. So the zero-shot score is a weighted sum over *hypotheses* about
how the new task ranks architectures, h in {V} and {each training task}:

    s_0(a) = sum_h pi_h z_h(a) + r(a),

z_h the hypothesis's scores standardised over the candidates, pi_h >= 0 the weights the blend
implies (`prior`), and r what the decomposition leaves (0 where every weighted task evaluated
every candidate). Observed (architecture, score) pairs on the new task are evidence about which
hypotheses rank it: each hypothesis is scored by Kendall's tau between its scores and the
observed ones (pairs of tied observations skipped), and the evidence weights are
max(0, tau_h)^p (`RefineConfig.power`), shared out over the hypotheses. With n observations the
new weights mix the two, the prior counting as m = n0 rho observations (n0 `prior_strength`, rho
below):

    w_h = total(pi') (m / (n + m) pi'_h / total(pi') + n / (n + m) e_h),   e = evidence share,

and replace the prior ones:

    s_K(a) = s_0(a) + sum_h (w_h - pi'_h) z_h(a),

so with no observations (or only ties, or no hypothesis with tau > 0) the weights are exactly the
zero-shot ones, and as evidence accumulates it moves toward the training tasks (and V) that rank
the new task's observations right. pi' mixes a share `prior_floor` of uniform weight over V and
the training tasks into the blend's weights, so that a hypothesis the blend gave no weight can
still win on evidence. rho is the share of pi' that depends on the task: V's and the kernels',
not best_on_average's (the same for every task) nor the floor's. A blend that found the
meta-features useless on the training tasks puts its weight on best_on_average, and then the
prior knows nothing of this task that the first observations would not overrule: there the
evidence takes over at the first pair, as in a transfer search without a prior, while a blend
that leans on V and the kernels keeps its strength (`prior_relevance` = 1, the default; 0 counts
every prior as n0). On two tables whose tasks differ in ways their meta-features do not show
this was better after 5 trainings (by 0.033 +- 0.017, paired), at a cost within noise on three
tables where they say something (BUILD_NOTES.md, "Few-shot search").

Why not a posterior under a pairwise-logistic rank likelihood: its product over all n (n - 1) / 2
pairs treats them as independent and piles onto one hypothesis within a few observations, while
no training task is the new task; a soft mixture of the ones that rank it well is the better
model of the evidence. Only the order of the observed scores is used: any increasing
transformation of the scores gives the same suggestions.

The suggestions are the unobserved candidates with the highest acquisition

    (1 - improvement) s_K(a) + improvement EI(a) + exploration spread(a),

EI(a) = sum_h w_h max(0, z_h(a) - z_h(best)) the expected improvement over the best observed
architecture when the hypotheses are possible worlds with probabilities w / total(w) (what a
user keeps is the best by validation, so a candidate is worth what it adds over that one), and
the spread the weighted standard deviation of z_h(a) over hypotheses (all in the same units).
s_K ranks candidates by their mean under the hypotheses, which prefers architectures that are
good under every likely one; EI prefers one that is best under some of them, so that successive
trainings bet on different hypotheses. The default mixes them half and half: pooled over four
meta-datasets the mean alone was not better at any budget, and worse on NAS-Bench-Graph at every
one; EI alone, which chases single training tasks' best architectures, was worse on
NAS-Bench-Graph after 10 (BUILD_NOTES.md, "Few-shot search"). Without observations the
acquisition is s_0.

V's hypothesis also learns from the observations (`RefineConfig.adaptation`, a scale
sigma >= 0, 0 turning it off): V's task term is linear in its architecture features phi(a)
(`tarch.value_net`), so a task-specific correction of its task embedding is a linear term
sigma <eta, phi(a)> added to V's standardised scores, eta fitted by MAP (`value_correction`: a
pairwise logistic likelihood of the observed order, a standard normal prior on eta, a few
Newton steps). It lets V express preferences of the new task that no training task and no
meta-feature showed, while the training tasks' hypotheses stay what they are. V's weight then
moves by the tau of its corrected scores judged out of sample (`prequential_tau`: each
observation against the earlier ones, by the correction fitted before it was observed), so that
a fit cannot vouch for itself; the observations' order (the order they were trained in)
matters here. With sigma = 1 the search was better after 10 and 20 trainings on NAS-Bench-Graph
(on two sets of seeds) and level on three other meta-datasets (BUILD_NOTES.md, "Few-shot
search").

Everything is a pure function of device arrays; the observations are padded to a fixed length
with a mask, so calls with any number of them share one compiled program.

Shape letters: H hypotheses (V, then every task of the table), X scored points (candidates and
observed architectures), T tasks, K observations (padded), D V's architecture features.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tarch import hparams, infer, ranker, tables
from tarch import value_net as vn
from tarch.meta_train import ValueModel
from tarch.space import Space


@dataclasses.dataclass(frozen=True)
class RefineConfig:
  """Settings of the refinement; the fields of `DYNAMIC` are traced arrays when compiled."""

  DYNAMIC: ClassVar[tuple[str, ...]] = ("power", "prior_strength", "prior_floor",
                                         "improvement", "exploration", "adaptation",
                                         "prior_relevance")

  power: float = 4.0  # evidence weight of a hypothesis: max(0, Kendall's tau)^power
  prior_strength: float = 1.0  # n0: the zero-shot weights count as this many observations
  # (times their task-specific share, by `prior_relevance`)
  prior_floor: float = 0.1  # share of the prior spread uniformly over V and the training tasks
  improvement: float = 0.5  # weight of the expected improvement over the best observed (vs the
  # refined mean) in the suggestions' score
  exploration: float = 0.0  # weight of the hypotheses' spread in the suggestions' score, once
  # there are observations (the first suggestions are the zero-shot ranking)
  adaptation: float = 1.0  # prior scale of V's task-specific correction fitted to the
  # observations (0: V's hypothesis is not corrected)
  prior_relevance: float = 1.0  # r in [0, 1]: the prior counts as n0 (1 - r + r rho)
  # observations, rho its share that depends on the task (`Prior.task_share`)

  def __post_init__(self):
    finite = lambda x: 0 <= x < float("inf")
    checks = {
        "0 < power < inf": finite(self.power) and self.power > 0,
        "0 < prior_strength < inf": finite(self.prior_strength) and self.prior_strength > 0,
        "0 <= prior_floor <= 1": 0 <= self.prior_floor <= 1,
        "0 <= improvement <= 1": 0 <= self.improvement <= 1,
        "0 <= exploration < inf": finite(self.exploration),
        "0 <= adaptation < inf": finite(self.adaptation),
        "0 <= prior_relevance <= 1": 0 <= self.prior_relevance <= 1,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
      raise ValueError(f"invalid RefineConfig: need {', '.join(failed)}; got {self}")


class Prior(flax.struct.PyTreeNode):
  """The hypotheses' scores of every point and their prior weights (what observations update)."""

  z_HxX: jax.Array  # float32 each hypothesis's scores, standardised over the candidates
  prior_H: jax.Array  # float32 pi' (summing to the blend's total weight); 0: not a hypothesis
  score_X: jax.Array  # float32 s_0, the zero-shot score: the refined one is s_0 plus the
  # change of weights times z, so that no change leaves it exactly as it is
  center_H: jax.Array  # float32 each hypothesis's mean over the candidates and
  scale_H: jax.Array  # its standard deviation (0: constant): z of points outside X
  task_share: jax.Array  # float32 rho: the share of pi' that depends on the task (V and the
  # kernels), not best_on_average's nor the floor's
  phi_XxD: jax.Array | None = None  # float32 V's architecture features phi of every point
  # (`tarch.value_net.features`), on which V's task correction acts; None: no correction

  def standardize(self, raw_HxK: jax.Array) -> jax.Array:
    """Raw hypothesis scores `[H, K]` of any points in the units of `z_HxX`."""
    return _standardize(raw_HxK, self.center_H, self.scale_H)


def _standardize(raw_HxK, center_H, scale_H):
  ok_H = scale_H > 0
  return jnp.where(ok_H[:, None], (raw_HxK - center_H[:, None])
                   / jnp.where(ok_H, scale_H, 1.0)[:, None], 0.0)


def prior(model: ValueModel, z_F: jax.Array, value_X: jax.Array, rows_X: jax.Array,
          member_X: jax.Array, prior_floor, enc_XxE: jax.Array | None = None) -> Prior:
  """The hypotheses for a task with standardised meta-features `z_F`.

  Args:
    model: a model with the training tasks' table attached (`model.kernel`).
    z_F: the task's meta-features, standardised by `model.scaler`.
    value_X: V's score of every point (`tarch.value_net.lower_bound`).
    rows_X: each point's row in the table (`tarch.tables.table_rows`).
    member_X: the candidates, over which scores are standardised (observed points need not
      be among them).
    prior_floor: `RefineConfig.prior_floor`.
    enc_XxE: the points' encodings, for V's task correction (`RefineConfig.adaptation`);
      None: V is not corrected.
  """
  kernel = model.kernel
  table = kernel.table
  pct_TxX = table.pct_TxA[:, rows_X]
  raw_HxX = jnp.concatenate([value_X[None], pct_TxX])
  center_H, scale_H = jax.vmap(_moments, in_axes=(0, None))(raw_HxX, member_X)
  comp_CxX = ranker.table_components(kernel, z_F, jnp.zeros(table.enc_AxE.shape[0]))[:, rows_X]
  comp_CxX = comp_CxX.at[0].set(value_X)
  blend_C = model.blend_C
  s0_X = ranker.blend_scores(blend_C, comp_CxX, member_X)

  sd_C = jax.vmap(lambda x: _moments(x, member_X)[1])(comp_CxX)
  sd_T = scale_H[1:]
  # Each table component is a weighted mean of the tasks' percentiles, so after standardising
  # it weighs task t by w_ct / sum(w_c) * sd_t / sd_c in units of z_t.
  weights_CxT = jnp.stack([kernel.weights(z_F, bandwidth=jnp.float32(b))
                           for b in ranker.KERNEL_BANDWIDTHS] + [kernel.train_T.astype(jnp.float32)])
  share_CxT = weights_CxT / jnp.maximum(weights_CxT.sum(1, keepdims=True), 1e-30)
  per_c = jnp.where(sd_C[1:] > 0, blend_C[1:] / jnp.where(sd_C[1:] > 0, sd_C[1:], 1.0), 0.0)
  prior_T = (per_c[:, None] * share_CxT).sum(0) * sd_T
  prior_H = jnp.concatenate([jnp.where(sd_C[0] > 0, blend_C[0], 0.0)[None], prior_T])
  valid_H = jnp.concatenate([jnp.ones(1, bool), kernel.train_T])
  total = prior_H.sum()
  total = jnp.where(total > 0, total, 1.0)
  # best_on_average (the last component) is the same for every task: its part of the prior
  # says nothing about this one.
  task_share = 1 - (per_c[-1] * share_CxT[-1] * sd_T).sum() / total
  uniform_H = valid_H / valid_H.sum()
  prior_H = total * ((1 - prior_floor) * prior_H / total + prior_floor * uniform_H)
  prior_H = jnp.where(valid_H, prior_H, 0.0)
  phi_XxD = None if enc_XxE is None else vn.features(model.config, enc_XxE)
  return Prior(z_HxX=_standardize(raw_HxX, center_H, scale_H), prior_H=prior_H, score_X=s0_X,
               center_H=center_H, scale_H=scale_H, phi_XxD=phi_XxD,
               task_share=jnp.clip((1 - prior_floor) * task_share, 0.0, 1.0))


def _moments(x_X, member_X):
  """Mean and standard deviation of `x_X` over the members (as `ranker.standardize`'s)."""
  n = jnp.maximum(member_X.sum(), 1)
  mean = jnp.sum(jnp.where(member_X, x_X, 0.0)) / n
  return mean, jnp.sqrt(jnp.sum(jnp.where(member_X, (x_X - mean) ** 2, 0.0)) / n)


def kendall_tau(z_HxK: jax.Array, y_K: jax.Array, mask_K: jax.Array) -> jax.Array:
  """`[H]`: Kendall's tau between each row of `z_HxK` and the observed scores `y_K` over the
  pairs of valid observations with distinct scores (0 when there is no such pair)."""
  above_KxK = mask_K[:, None] & mask_K[None] & (y_K[:, None] > y_K[None])
  sign_HxKxK = jnp.sign(z_HxK[:, :, None] - z_HxK[:, None, :])
  return (jnp.sum(jnp.where(above_KxK, sign_HxKxK, 0.0), axis=(1, 2))
          / jnp.maximum(above_KxK.sum(), 1))


def weight_change(prior_H: jax.Array, tau_H: jax.Array, mask_K: jax.Array, power,
                  prior_strength) -> jax.Array:
  """w_H - pi'_H: how the observations (valid where `mask_K`), through each hypothesis's
  Kendall's tau with them `tau_H`, move the prior weights `prior_H`, the prior counting as
  `prior_strength` >= 0 observations (0: the evidence alone, once there is any). The new
  weights w = pi' + change mix the prior with the evidence weights max(0, tau_h)^power at the
  prior's total; the change is exactly 0 without observations or evidence."""
  total = prior_H.sum()
  prior_share_H = prior_H / jnp.where(total > 0, total, 1.0)
  evidence_H = jnp.where(prior_H > 0, jnp.maximum(tau_H, 0.0) ** power, 0.0)
  evidence_total = evidence_H.sum()
  # No hypothesis ranks the observations better than chance: nothing to move the prior toward.
  evidence_share_H = jnp.where(evidence_total > 0,
                               evidence_H / jnp.where(evidence_total > 0, evidence_total, 1.0),
                               prior_share_H)
  n = mask_K.sum()
  lam = jnp.where(n > 0, n / jnp.maximum(n + prior_strength, 1e-30), 0.0)
  return total * lam * (evidence_share_H - prior_share_H)


ADAPTATION_STEPS = 8  # Newton steps of V's task correction (a smooth, strongly convex fit)


def value_correction(z_K: jax.Array, phi_KxD: jax.Array, y_K: jax.Array, mask_K: jax.Array,
                     scale) -> jax.Array:
  """eta `[D]` of V's task correction scale * <eta, phi(a)>: the MAP estimate under a pairwise
  logistic likelihood of the observed order (every pair of valid observations with distinct
  scores, V's corrected standardised score `z_K + scale * phi_KxD @ eta` as the logit) and a
  standard normal prior on eta. 0 exactly without such a pair or with `scale` 0."""
  above_KxK = (mask_K[:, None] & mask_K[None] & (y_K[:, None] > y_K[None])).astype(z_K.dtype)
  s_KxD = scale * phi_KxD
  eye_DxD = jnp.eye(phi_KxD.shape[1], dtype=z_K.dtype)

  def newton(eta_D, _):
    # The loss sum_{i above j} softplus(u_j - u_i) + |eta|^2 / 2, u = z + s phi eta, in closed
    # form: with p_ij = sigmoid(u_j - u_i) on each pair, the gradient is s phi^T r + eta (r =
    # d loss / d u) and the Hessian s^2 phi^T L phi + I, L the graph Laplacian of the pairs
    # weighted by p_ij (1 - p_ij).
    u_K = z_K + s_KxD @ eta_D
    sigmoid_KxK = jax.nn.sigmoid(u_K[None] - u_K[:, None])
    p_KxK = above_KxK * sigmoid_KxK
    r_K = p_KxK.sum(0) - p_KxK.sum(1)
    w_KxK = p_KxK * (1 - sigmoid_KxK)
    w_KxK = w_KxK + w_KxK.T
    lap_KxK = jnp.diag(w_KxK.sum(1)) - w_KxK
    hess_DxD = s_KxD.T @ lap_KxK @ s_KxD + eye_DxD
    step_D = jnp.linalg.solve(hess_DxD, s_KxD.T @ r_K + eta_D)
    return eta_D - step_D, None

  eta_D, _ = jax.lax.scan(newton, jnp.zeros(phi_KxD.shape[1], z_K.dtype), None,
                          length=ADAPTATION_STEPS)
  return eta_D


def prequential_tau(z_K: jax.Array, phi_KxD: jax.Array, y_K: jax.Array, mask_K: jax.Array,
                    scale) -> tuple[jax.Array, jax.Array]:
  """(tau, eta `[D]`): Kendall's tau of V's corrected scores with the observations, each
  observation judged against the earlier ones (in slot order) by the correction fitted before it
  was observed (`value_correction` on the earlier ones alone), so that the fit is judged out of
  sample; and the correction fitted on all of them. With `scale` 0 the tau is `kendall_tau` of
  `z_K` exactly (every pair counted once either way)."""
  k = y_K.shape[0]
  slot_K = jnp.arange(k)

  def judge(i):  # i = k: no observation left to judge, the fit on all of them
    earlier_K = mask_K & (slot_K < i)
    eta_D = value_correction(z_K, phi_KxD, y_K, earlier_K, scale)
    u_K = z_K + scale * (phi_KxD @ eta_D)
    j = jnp.minimum(i, k - 1)
    pair_K = earlier_K & mask_K[j] & (i < k) & (y_K != y_K[j])
    agree_K = jnp.sign(u_K[j] - u_K) * jnp.sign(y_K[j] - y_K)
    return jnp.sum(jnp.where(pair_K, agree_K, 0.0)), pair_K.sum(), eta_D

  agree, pairs, eta_JxD = jax.vmap(judge)(jnp.arange(k + 1))
  return agree.sum() / jnp.maximum(pairs.sum(), 1), eta_JxD[k]


def refined_scores(z_HxX: jax.Array, score_X: jax.Array, prior_H: jax.Array,
                   change_H: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(mean `[X]`, spread `[X]`, weights `[H]`) of the refined score after `weight_change`,
  `score_X` the zero-shot score plus V's correction times its prior weight."""
  mean_X = score_X + change_H @ z_HxX
  w_H = prior_H + change_H
  share_H = w_H / jnp.maximum(w_H.sum(), 1e-30)
  centre_X = share_H @ z_HxX
  spread_X = jnp.sqrt(jnp.maximum(share_H @ (z_HxX - centre_X) ** 2, 0.0))
  return mean_X, spread_X, w_H


def expected_improvement(z_HxX: jax.Array, w_H: jax.Array, z_HxK, y_K, mask_K) -> jax.Array:
  """`[X]` sum_h w_h max(0, z_h(x) - z_h(best)), best the highest-scoring valid observation
  (the first of equal ones); 0 without observations."""
  best = jnp.argmax(jnp.where(mask_K, y_K, -jnp.inf))
  gain_HxX = jnp.maximum(z_HxX - z_HxK[:, best][:, None], 0.0)
  return jnp.where(mask_K.any(), w_H @ gain_HxX, 0.0)


def acquisition(p: Prior, z_HxK, y_K, mask_K, dyn: dict, phi_KxD: jax.Array | None = None):
  """(what suggestions are ranked by `[X]`, refined mean `[X]`, spread `[X]`, weights `[H]`)
  after observations with hypothesis scores `z_HxK` (`Prior.standardize`, or columns of
  `p.z_HxX`), `dyn` the dynamic part of a `RefineConfig`; `phi_KxD`, V's features of the
  observations, for V's task correction (with `p.phi_XxD`)."""
  tau_H = kendall_tau(z_HxK, y_K, mask_K)
  z_HxX, score_X = p.z_HxX, p.score_X
  if phi_KxD is not None and p.phi_XxD is not None:
    # V's hypothesis corrected toward the observations, its tau judged out of sample. No pair
    # or adaptation 0: exactly no change.
    scale = dyn["adaptation"]
    tau_v, eta_D = prequential_tau(z_HxK[0], phi_KxD, y_K, mask_K, scale)
    tau_H = tau_H.at[0].set(tau_v)
    corr_X, corr_K = scale * (p.phi_XxD @ eta_D), scale * (phi_KxD @ eta_D)
    z_HxX, z_HxK = z_HxX.at[0].add(corr_X), z_HxK.at[0].add(corr_K)
    score_X = score_X + p.prior_H[0] * corr_X
  relevance = dyn["prior_relevance"]
  strength = dyn["prior_strength"] * (1 - relevance + relevance * p.task_share)
  change_H = weight_change(p.prior_H, tau_H, mask_K, dyn["power"], strength)
  mean_X, spread_X, w_H = refined_scores(z_HxX, score_X, p.prior_H, change_H)
  # Without observations both weights are 0, and 1 * mean + 0 * EI + 0 * spread is the mean
  # exactly (EI and the spread are finite): the zero-shot ranking is kept bit for bit.
  observed = mask_K.any()
  improvement = jnp.where(observed, dyn["improvement"], 0.0)
  exploration = jnp.where(observed, dyn["exploration"], 0.0)
  score_X = ((1 - improvement) * mean_X
             + improvement * expected_improvement(z_HxX, w_H, z_HxK, y_K, mask_K))
  return score_X + exploration * spread_X, mean_X, spread_X, w_H


@dataclasses.dataclass(frozen=True)
class Refinement:
  """The result of `refine`: the next architectures to train, best first by the acquisition
  (the refined mean mixed with the expected improvement; see the module's docstring)."""

  architectures: list[dict[str, Any]]
  encodings: np.ndarray  # float32 [q, E]
  predicted: np.ndarray  # float32 [q] refined score (units of standard deviations over the
  # candidates, as the zero-shot blend's)
  uncertainty: np.ndarray  # float32 [q] spread of the hypotheses' scores under the weights
  acquisition: np.ndarray  # float32 [q] what the suggestions are ranked by (decreasing)
  pool_indices: np.ndarray | None  # int [q] rows of the pool, when one was given
  task_weights: np.ndarray  # float32 [T] updated share of each table task (0: not training)
  value_net_weight: float  # updated share of V


@jax.jit
def _prepare(model: ValueModel, features_F, cand_CxE, rows_C, pessimism, prior_floor) -> Prior:
  """The prior over the candidates: V and the table components scored once per task."""
  z_F = model.scaler.standardize(features_F)
  value_C = vn.lower_bound(model.predict_members(features_F, cand_CxE), pessimism)
  return prior(model, z_F, value_C, rows_C, jnp.ones(cand_CxE.shape[0], bool), prior_floor,
               cand_CxE)


@functools.partial(jax.jit, static_argnames=("q",))
def _suggest(model: ValueModel, p: Prior, features_F, obs_KxE, rows_K, cand_K, y_K, mask_K, dyn,
             pessimism, q):
  """Top `q` candidates after the observations (`cand_K`: each one's candidate index, or the
  number of candidates where it is none), with refined means, spreads, hypothesis shares and
  acquisitions."""
  value_K = vn.lower_bound(model.predict_members(features_F, obs_KxE), pessimism)
  z_HxK = p.standardize(jnp.concatenate([value_K[None], model.kernel.table.pct_TxA[:, rows_K]]))
  score_C, mean_C, spread_C, w_H = acquisition(p, z_HxK, y_K, mask_K, dyn,
                                                vn.features(model.config, obs_KxE))
  c = score_C.shape[0]
  # Observed candidates are not suggested again.
  seen_C = jnp.zeros(c, bool).at[jnp.where(mask_K, cand_K, c)].set(True, mode="drop")
  top_score, top = jax.lax.top_k(jnp.where(seen_C, -jnp.inf, score_C), min(q, c))
  share_H = w_H / jnp.maximum(w_H.sum(), 1e-30)
  return top, jnp.isfinite(top_score), mean_C[top], spread_C[top], share_H, top_score


def _padded_length(k: int) -> int:
  """Observation slots compiled for k observations: a power of two (at least 8), so that calls
  with a growing number of observations compile a handful of programs, not one each."""
  return max(8, 1 << max(k - 1, 0).bit_length())


def _key(enc_E: np.ndarray) -> bytes:
  return (enc_E + np.float32(0.0)).tobytes()  # + 0: -0.0 and 0.0 are one architecture


class TaskRefiner:
  """Few-shot suggestions for one task: its candidates are scored once, at construction, so
  that each `suggest` costs only the observations' update (a sequential search calls it after
  every training).

  Args:
    model: a model fitted with the training tasks' table attached (`tarch.meta_train.fit`
      with `TrainConfig.blend`, the default, or `restore` of one).
    space: the search space the model was trained on.
    features_F: the task's raw meta-features.
    pool_PxE: optional encodings of the allowed architectures (default: every architecture a
      training task evaluated).
    config: refinement settings.
    infer_config: the zero-shot inference settings to refine from (V's values are ranked with
      its `pessimism`, as `tarch.infer` ranks them).
  """

  def __init__(self, model: ValueModel, space: Space, features_F, pool_PxE=None,
               config: RefineConfig = RefineConfig(),
               infer_config: infer.InferConfig = infer.InferConfig()):
    if model.kernel is None or model.blend_C is None:
      raise ValueError("refine needs the training tasks' table attached to the model: fit it "
                       "with TrainConfig.blend=True (the default), or restore one saved after "
                       "such a fit")
    features_F = infer.checked_features(model, features_F)
    if (model.config.encoding_dim, model.config.numeric_dims) != (space.dim, space.numeric_dims):
      raise ValueError(f"the model was trained on an encoding of width "
                       f"{model.config.encoding_dim}, but space {space.name!r} has width "
                       f"{space.dim}")
    table = model.kernel.table
    self._table = tables.TableIndex(table.enc_AxE)
    if pool_PxE is None:  # the table's own architectures: their rows are known
      rows_C = np.flatnonzero(np.asarray((table.evaluated_TxA & model.kernel.train_T[:, None])
                                         .any(0)))
      cand_CxE = self._table.enc_AxE[rows_C]
      self._pool_rows = None
    else:
      cand_CxE = np.asarray(pool_PxE, np.float32)
      if cand_CxE.ndim != 2 or cand_CxE.shape[1] != space.dim or cand_CxE.shape[0] == 0:
        raise ValueError(f"pool must have shape [N>0, {space.dim}], got {cand_CxE.shape}")
      if not np.all(np.isfinite(cand_CxE)):
        raise ValueError("pool encodings must be finite")
      # A pool listing an architecture twice: suggested once, as its first row.
      self._pool_rows = np.sort(np.unique(cand_CxE, axis=0, return_index=True)[1])
      cand_CxE = cand_CxE[self._pool_rows]
      rows_C = self._table.rows(cand_CxE)
    self.model, self.space, self.config, self.infer_config = model, space, config, infer_config
    self._cand_CxE = cand_CxE
    self._cand_index = {_key(e): c for c, e in enumerate(cand_CxE)}
    self._features_F = jnp.asarray(features_F)
    _, self._dyn = _split(config)
    self._prior = _prepare(model, self._features_F, jnp.asarray(cand_CxE),
                           jnp.asarray(rows_C, jnp.int32), jnp.float32(infer_config.pessimism),
                           self._dyn["prior_floor"])

  def suggest(self, observed, scores, q: int = 1) -> Refinement:
    """The next `q` architectures to train, given the results of those trained so far.

    Args:
      observed: the architectures trained on the task so far, in the order they were
        trained: dictionaries (`space.encode`) or encodings `[K, E]`; may be empty.
      scores: their validation scores `[K]`, higher is better (only their order is used).
      q: how many suggestions (a batch to train at once), distinct and not among `observed`.

    Returns:
      A `Refinement` with up to `q` architectures, best first.
    """
    if not isinstance(q, (int, np.integer)) or isinstance(q, bool) or q < 1:
      raise ValueError(f"q must be a positive integer, got {q!r}")
    obs_KxE = _observed_encodings(self.space, observed)
    y_K = np.asarray(scores, np.float64)
    if y_K.ndim != 1 or y_K.shape[0] != obs_KxE.shape[0]:
      raise ValueError(f"scores must be a vector of one score per observed architecture "
                       f"({obs_KxE.shape[0]}), got shape {y_K.shape}")
    if not np.all(np.isfinite(y_K)):
      bad = int(np.argmax(~np.isfinite(y_K)))
      raise ValueError(f"score {bad} is {float(y_K[bad])}: scores must be finite")
    k = obs_KxE.shape[0]
    n = _padded_length(k)
    # Ranks, not scores, enter the compiled function: float32 could round distinct scores
    # equal. Equal scores get equal ranks, so ties stay ties.
    rank_K = np.searchsorted(np.sort(y_K), y_K).astype(np.float32)
    pad = lambda x: np.concatenate([x, np.zeros((n - k,) + x.shape[1:], x.dtype)])
    rows_K = self._table.rows(obs_KxE) if k else np.zeros(0, np.int64)
    c = self._cand_CxE.shape[0]
    cand_K = np.array([self._cand_index.get(_key(e), c) for e in obs_KxE], np.int64)
    top, valid, mean, spread, share_H, acq = jax.device_get(_suggest(
        self.model, self._prior, self._features_F, jnp.asarray(pad(obs_KxE)),
        jnp.asarray(pad(rows_K), jnp.int32), jnp.asarray(pad(cand_K), jnp.int32),
        jnp.asarray(pad(rank_K)), jnp.asarray(np.arange(n) < k), self._dyn,
        jnp.float32(self.infer_config.pessimism), int(q)))
    top, mean, spread, acq = top[valid], mean[valid], spread[valid], acq[valid]
    enc = self._cand_CxE[top]
    return Refinement(architectures=self.space.decode_many(enc), encodings=enc, predicted=mean,
                      uncertainty=spread, acquisition=acq,
                      pool_indices=self._pool_rows[top] if self._pool_rows is not None else None,
                      task_weights=share_H[1:], value_net_weight=float(share_H[0]))


_REFINERS: collections.OrderedDict = collections.OrderedDict()
_MAX_REFINERS = 4


def refine(model: ValueModel, space: Space, features_F, observed, scores, q: int = 1,
           pool_PxE=None, config: RefineConfig = RefineConfig(),
           infer_config: infer.InferConfig = infer.InferConfig()) -> Refinement:
  """The next `q` architectures to train on a task, given the results of those trained so
  far: `TaskRefiner(model, space, features_F, pool_PxE, config, infer_config).suggest(
  observed, scores, q)` (see both for the arguments).

  The refiners of the last few (model, space, task, pool, settings) are kept, so that a
  sequential search calling `refine` after every training scores the candidates once; a
  model is recognised by identity (the same object), the rest by value.
  """
  features = np.asarray(features_F, np.float64)
  pool = None if pool_PxE is None else np.asarray(pool_PxE, np.float32)
  key = (id(model), id(space), features.shape, features.tobytes(),
         None if pool is None else (pool.shape, hashlib.blake2b(pool.tobytes()).digest()),
         config, infer_config)
  refiner = _REFINERS.get(key)
  if refiner is None or refiner.model is not model or refiner.space is not space:
    refiner = TaskRefiner(model, space, features_F, pool_PxE, config, infer_config)
    _REFINERS[key] = refiner
    while len(_REFINERS) > _MAX_REFINERS:
      _REFINERS.popitem(last=False)
  _REFINERS.move_to_end(key)
  return refiner.suggest(observed, scores, q)


@functools.lru_cache(maxsize=16)
def _split(config: RefineConfig):
  return hparams.split(config)


def _observed_encodings(space: Space, observed) -> np.ndarray:
  """`observed` (dicts or encodings) as float32 `[K, E]`."""
  if isinstance(observed, np.ndarray) and observed.size == 0:
    return np.zeros((0, space.dim), np.float32)
  if isinstance(observed, np.ndarray) or (observed is not None and len(observed) and
                                          not isinstance(observed[0], dict)):
    enc = np.asarray(observed, np.float32)
    if enc.ndim != 2 or enc.shape[1] != space.dim:
      raise ValueError(f"observed encodings must have shape [K, {space.dim}], got {enc.shape}")
    if not np.all(np.isfinite(enc)):
      raise ValueError("observed encodings must be finite")
    return enc
  observed = list(observed or [])
  if not observed:
    return np.zeros((0, space.dim), np.float32)
  return np.stack([np.asarray(space.encode(a), np.float32) for a in observed])
