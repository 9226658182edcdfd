"""The input pipeline. It differs by backend (tf.data on TensorFlow, a PyDataset elsewhere), so the last test runs
this whole file again under JAX and PyTorch."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from alexnet.pipeline import order
from alexnet.pipeline.arrays import ArrayBatches, make_dataset, training_batches


def _data(n=10):
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 4, 4, 3), dtype=np.uint8)
    return images, np.arange(n)


def _epoch(dataset):
    """One epoch of (images, labels) batches, as `fit` draws them (a PyDataset is told when the epoch ends)."""
    if isinstance(dataset, keras.utils.PyDataset):
        batches = [dataset[i][:2] for i in range(len(dataset))]
        dataset.on_epoch_end()
    else:
        batches = list(dataset)
    return [(np.asarray(x), np.asarray(y)) for x, y in batches]


def test_batches_stay_uint8_and_keep_images_with_their_labels():
    images, labels = _data()
    batches = _epoch(make_dataset(images, labels, batch_size=4, shuffle=True, seed=0))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    for x, y in batches:
        assert x.dtype == np.uint8 and x.shape[1:] == (4, 4, 3)
        np.testing.assert_array_equal(x[:, 0, 0, 0], y)  # image i holds the value i


def test_shuffle_covers_the_split_and_changes_every_epoch():
    images, labels = _data(50)
    dataset = make_dataset(images, labels, batch_size=50, shuffle=True, seed=1)
    first, second = (_epoch(dataset)[0][1] for _ in range(2))
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert not np.array_equal(first, second)
    again = _epoch(make_dataset(images, labels, batch_size=50, shuffle=True, seed=1))[0][1]
    np.testing.assert_array_equal(first, again)  # seeded


def test_without_shuffle_the_order_is_kept():
    images, labels = _data(7)
    order = np.concatenate([y for _, y in _epoch(make_dataset(images, labels, batch_size=3))])
    np.testing.assert_array_equal(order, np.arange(7))


def test_process_shards_partition_every_global_batch():
    images, labels = _data(20)
    shards = [ArrayBatches(images, labels, batch_size=8, shuffle=True, seed=3, shard=(i, 2)) for i in range(2)]
    whole = ArrayBatches(images, labels, batch_size=8, shuffle=True, seed=3)
    assert len(shards[0]) == len(whole) == 3
    for index in range(len(whole)):
        parts = [shard[index][1] for shard in shards]
        assert sorted(np.concatenate(parts)) == sorted(whole[index][1])  # same global batch, split in two
        assert not set(parts[0]) & set(parts[1])


def test_uneven_last_batches_for_several_devices():
    images = np.arange(7 * 2 * 2 * 3, dtype=np.uint8).reshape(7, 2, 2, 3)
    labels = np.arange(7)
    evaluation = ArrayBatches(images, labels, batch_size=4, replicas=2)
    batches = [evaluation[i] for i in range(len(evaluation))]
    assert [len(b[0]) for b in batches] == [4, 4]  # 3 left over, padded to 4
    assert batches[1][2].tolist() == [1, 1, 1, 0]  # the copy counts for nothing
    assert sorted(np.concatenate([b[1][b[2] > 0] for b in batches]).tolist()) == list(range(7))  # each once
    training = ArrayBatches(images, labels, batch_size=4, shuffle=True, seed=0, replicas=2)
    assert [len(training[i][0]) for i in range(len(training))] == [4, 2]  # 3 left over, cut to 2
    one_left = ArrayBatches(images[:5], labels[:5], batch_size=4, shuffle=True, seed=0, replicas=2)
    assert len(one_left) == 1  # a last batch of 1 image cannot be split over 2 devices: left out
    two_processes = [ArrayBatches(images, labels, batch_size=4, replicas=2, shard=(p, 2)) for p in (0, 1)]
    assert [len(two_processes[p][1][0]) for p in (0, 1)] == [2, 2]  # equal shares of the padded batch


def test_fit_reshuffles_array_batches_every_epoch():
    """`fit` itself calls on_epoch_end: each epoch draws the split in another order."""
    images, labels = _data(40)
    batches = ArrayBatches(images, labels, batch_size=8, shuffle=True, seed=5)
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(batches._order.copy()))
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(40)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(batches, epochs=3, verbose=0, callbacks=[record])
    assert len(seen) == 3 and all(sorted(order) == list(range(40)) for order in seen)
    assert len({tuple(order) for order in seen}) == 3


def _labels_of_epochs(dataset, epochs):
    """The label batches of `epochs` epochs, as fit reads them (a PyDataset told of each epoch's end)."""
    if not isinstance(dataset, keras.utils.PyDataset):
        return [np.asarray(y).tolist() for _, y in dataset]
    return [batch for _ in range(epochs) for batch in (y.tolist() for _, y in _epoch(dataset))]


def test_training_batches_read_each_epochs_seeded_order_from_any_step():
    images, labels = _data(10)
    expected = [order.permutation(10, 3, epoch)[start:start + 4].tolist() for epoch in (0, 1) for start in (0, 4, 8)]
    whole = _labels_of_epochs(training_batches(images, labels, 4, seed=3, first_epoch=0, epochs=2), 2)
    assert whole == expected  # epoch e's order is the seed's and e's alone
    resumed = training_batches(images, labels, 4, seed=3, first_epoch=1, epochs=2, first_step=1)
    assert _labels_of_epochs(resumed, 1) == expected[4:]  # mid-epoch: the batches an uninterrupted run reads next
    for x, y in resumed if not isinstance(resumed, keras.utils.PyDataset) else [resumed[0][:2]]:
        np.testing.assert_array_equal(np.asarray(x)[:, 0, 0, 0], np.asarray(y))  # images keep their labels


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow", reason="runs the others")
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_this_file_passes_on_the_other_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                          capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend},
                          cwd=Path(__file__).parent, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
