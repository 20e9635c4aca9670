"""Meta-features of a classification task from its raw arrays: jit-compiled and vmappable.

Tasks of different sizes are padded to shared shapes and described by masks, so that many tasks
`jax.vmap` together: `x_NxD` (rows beyond the task's size and features beyond its width are
padding), `y_N` integer labels in [0, C), `row_mask_N`, `feature_mask_D`, and `holdout_N`, the
valid rows the two landmarkers are scored on (they are fitted on the other valid rows). Padding
never changes a meta-feature (tested).

`NAMES` lists the meta-features, in order:
- size: log rows, log features, log classes present, normalised class entropy, log ratio of the
  largest to the smallest present class;
- feature statistics (after standardising each feature): mean absolute skewness, mean excess
  kurtosis, fraction of (near-)constant features;
- spectrum of the feature correlation matrix: share of variance of the first principal
  component, of the first three, and the effective rank (exp of the eigenvalue entropy) divided by
  the number of features;
- landmarkers: held-out accuracy of a nearest-centroid classifier and of a closed-form ridge
  regression onto one-hot labels.

Standardise them across tasks with training-task statistics only (`tarch.meta_train` does, in
`FeatureScaler`). Shape letters: N rows, D features, C classes, F meta-features.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

NAMES = (
    "log_rows", "log_features", "log_classes", "class_entropy", "log_class_imbalance",
    "mean_abs_skewness", "mean_excess_kurtosis", "constant_feature_fraction",
    "pca_first_share", "pca_top3_share", "effective_rank_fraction",
    "nearest_centroid_accuracy", "ridge_accuracy",
)
_EPS = 1e-8
_RIDGE = 1e-2  # ridge penalty, relative to the mean diagonal of the standardised Gram matrix


@functools.partial(jax.jit, static_argnames="num_classes")
def compute(x_NxD: jax.Array, y_N: jax.Array, row_mask_N: jax.Array, feature_mask_D: jax.Array,
            holdout_N: jax.Array, num_classes: int) -> jax.Array:
  """The meta-features `[F]` (in `NAMES` order) of one task; vmap it over tasks.

  Args:
    x_NxD: float features, padded.
    y_N: int labels in [0, num_classes); padding rows may hold anything in range.
    row_mask_N: bool, True for the task's rows.
    feature_mask_D: bool, True for the task's features.
    holdout_N: bool, True for valid rows on which the landmarkers are scored (not fitted).
    num_classes: C, the label range shared by the padded tasks (static).
  """
  row = row_mask_N.astype(jnp.float32)
  feat = feature_mask_D.astype(jnp.float32)
  n, d = row.sum(), feat.sum()
  x = jnp.where(row_mask_N[:, None] & feature_mask_D[None], x_NxD.astype(jnp.float32), 0.0)

  counts_C = jax.nn.one_hot(y_N, num_classes).T @ row
  present = counts_C > 0
  p_C = counts_C / jnp.maximum(n, 1.0)
  num_present = present.sum()
  entropy = -jnp.sum(jnp.where(present, p_C * jnp.log(jnp.where(present, p_C, 1.0)), 0.0))
  norm_entropy = jnp.where(num_present > 1, entropy / jnp.log(jnp.maximum(num_present, 2)), 0.0)
  imbalance = jnp.log(jnp.max(counts_C) / jnp.min(jnp.where(present, counts_C, jnp.inf)))

  mean_D = (row @ x) / jnp.maximum(n, 1.0)
  centred = (x - mean_D) * row[:, None] * feat[None]
  var_D = (row @ centred**2) / jnp.maximum(n, 1.0)
  constant_D = (var_D <= _EPS) & feature_mask_D
  live_D = feature_mask_D & ~constant_D
  z = centred / jnp.sqrt(jnp.where(live_D, var_D, 1.0)) * live_D
  n_live = jnp.maximum(live_D.sum(), 1)
  skew = jnp.sum(jnp.abs(row @ z**3) / jnp.maximum(n, 1.0)) / n_live
  kurt = jnp.sum(jnp.where(live_D, (row @ z**4) / jnp.maximum(n, 1.0) - 3.0, 0.0)) / n_live

  corr_DxD = z.T @ z / jnp.maximum(n, 1.0)
  eig = jnp.clip(jnp.linalg.eigvalsh(corr_DxD)[::-1], 0.0, None)  # padding gives zeros
  share = eig / jnp.maximum(eig.sum(), _EPS)
  eff_rank = jnp.exp(-jnp.sum(jnp.where(share > 0, share * jnp.log(jnp.where(
      share > 0, share, 1.0)), 0.0)))

  fit = row_mask_N & ~holdout_N
  test = (row_mask_N & holdout_N).astype(jnp.float32)
  onehot_NxC = jax.nn.one_hot(y_N, num_classes) * fit[:, None]
  centroid_CxD = (onehot_NxC.T @ z) / jnp.maximum(onehot_NxC.sum(0), 1.0)[:, None]
  dist_NxC = jnp.sum((z[:, None, :] - centroid_CxD[None]) ** 2, -1)
  dist_NxC = jnp.where((onehot_NxC.sum(0) > 0)[None], dist_NxC, jnp.inf)
  centroid_acc = _accuracy(-dist_NxC, y_N, test)
  zf = z * fit[:, None]
  gram_DxD = zf.T @ zf
  ridge = _RIDGE * jnp.maximum(jnp.trace(gram_DxD) / jnp.maximum(n_live, 1), 1.0)
  # Padding features have zero columns; the identity keeps the system well posed for them.
  w_DxC = jnp.linalg.solve(gram_DxD + ridge * jnp.eye(gram_DxD.shape[0]), zf.T @ onehot_NxC)
  ridge_acc = _accuracy(z @ w_DxC, y_N, test)

  return jnp.stack([
      jnp.log(jnp.maximum(n, 1.0)), jnp.log(jnp.maximum(d, 1.0)),
      jnp.log(jnp.maximum(num_present, 1).astype(jnp.float32)), norm_entropy, imbalance,
      skew, kurt, constant_D.sum() / jnp.maximum(d, 1.0),
      share[0], share[:3].sum(), eff_rank / jnp.maximum(d, 1.0),
      centroid_acc, ridge_acc,
  ]).astype(jnp.float32)


def _accuracy(logits_NxC, y_N, weight_N):
  """Weighted accuracy of argmax predictions."""
  correct = (jnp.argmax(logits_NxC, -1) == y_N).astype(jnp.float32)
  return jnp.sum(correct * weight_N) / jnp.maximum(weight_N.sum(), 1.0)
