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
from alexnet.pipeline.arrays import ArrayBatches, EpochOrder, evaluation_batches, training_batches
from alexnet.pipeline.feed import Epochs, Feed


def _data(n=10):
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 4, 4, 3), dtype=np.uint8)
    return images, np.arange(n)


def _epoch(dataset):
    """One epoch of (images, labels) batches, as `fit` draws them (a PyDataset is told when the epoch ends)."""
    if isinstance(dataset, keras.utils.PyDataset):
        batches = [dataset[i][:2] for i in range(len(dataset))]
        dataset.set_epoch(dataset.epoch + 1)  # what EpochOrder does in fit
    else:
        batches = list(dataset)
    return [(np.asarray(batch[0]), np.asarray(batch[1])) for batch in batches]


def _list(dataset):
    return [dataset[i] for i in range(len(dataset))] if isinstance(dataset, keras.utils.PyDataset) else \
        list(dataset.as_numpy_iterator())


def test_batches_stay_uint8_and_keep_images_with_their_labels():
    images, labels = _data()
    batches = _epoch(training_batches(images, labels, Feed(4, seed=0), Epochs(0, 1)))
    assert [len(y) for _, y in batches] == [4, 4]  # whole batches: the other 2 images wait for another epoch
    for x, y in batches:
        assert x.dtype == np.uint8 and x.shape[1:] == (4, 4, 3)
        np.testing.assert_array_equal(x[:, 0, 0, 0], y)  # image i holds the value i


def test_each_epoch_is_another_seeded_permutation_of_the_split():
    images, labels = _data(50)
    first, second = _labels_of_epochs(training_batches(images, labels, Feed(50, seed=1), Epochs(0, 2)), 2)
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert first == order.permutation(50, 1, 0).tolist() and second == order.permutation(50, 1, 1).tolist()
    assert first != second


def test_evaluation_keeps_the_order_in_batches_of_one_size_padded_with_weight_0():
    images, labels = _data(7)
    dataset = evaluation_batches(images, labels, Feed(3))
    batches = _list(dataset)
    assert [np.asarray(y).tolist() for _, y, _ in batches] == [[0, 1, 2], [3, 4, 5], [6, 0, 0]]  # one shape
    assert [np.asarray(w).tolist() for _, _, w in batches][-1] == [1, 0, 0]  # the padding counts for nothing
    assert [len(y) for _, y, _ in _list(evaluation_batches(images, labels, Feed(4)))] == [4, 4]  # 7 at 4: even


def test_process_shards_partition_every_global_batch():
    images, labels = _data(20)
    shards = [ArrayBatches(images, labels, Feed(8, (i, 2), seed=3), Epochs(0, 1)) for i in range(2)]
    whole = ArrayBatches(images, labels, Feed(8, seed=3), Epochs(0, 1))
    assert len(shards[0]) == len(whole) == 2  # 20 // 8 whole global batches
    for index in range(len(whole)):
        parts = [shard[index][1] for shard in shards]
        np.testing.assert_array_equal(np.concatenate(parts), whole[index][1])  # the global batch, in two blocks


def test_uneven_last_batches_for_several_devices():
    images = np.arange(7 * 2 * 2 * 3, dtype=np.uint8).reshape(7, 2, 2, 3)
    labels = np.arange(7)
    evaluation = ArrayBatches(images, labels, Feed(4, replicas=2))
    batches = [evaluation[i] for i in range(len(evaluation))]
    assert [len(b[0]) for b in batches] == [4, 4]  # 3 left over, padded to 4
    assert batches[1][2].tolist() == [1, 1, 1, 0]  # the padding counts for nothing
    assert sorted(np.concatenate([b[1][b[2] > 0] for b in batches]).tolist()) == list(range(7))  # each once
    training = ArrayBatches(images, labels, Feed(4, seed=0, replicas=2), Epochs(0, 1))
    assert [len(training[i][0]) for i in range(len(training))] == [4]  # whole global batches only
    two_processes = [ArrayBatches(images, labels, Feed(4, (p, 2), replicas=2)) for p in (0, 1)]
    assert [len(two_processes[p][1][0]) for p in (0, 1)] == [2, 2]  # equal shares of the padded batch
    assert [two_processes[p][1][2].tolist() for p in (0, 1)] == [[1, 1], [1, 0]]


def test_fit_reads_each_epochs_own_order():
    """With `EpochOrder`, epoch e reads the order of e, and a fit from a later epoch, or from a step mid-way, reads
    what an uninterrupted one did (fit's own hooks on a PyDataset miscount epochs: see EpochOrder)."""
    images, labels = _data(40)
    batches = ArrayBatches(images, labels, Feed(8, seed=5), Epochs(0, 3))
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(batches._rows.copy()))
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(40)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(batches, epochs=3, verbose=0, callbacks=[EpochOrder(batches), record])
    assert [rows.tolist() for rows in seen] == [order.permutation(40, 5, epoch).tolist() for epoch in range(3)]
    read = {}  # (epoch, batch) -> labels (Keras may also peek at a batch to learn the shapes)

    class Recorded(ArrayBatches):
        def __getitem__(self, index):
            batch = super().__getitem__(index)
            read[self.epoch, index] = batch[1].tolist()
            return batch

    # A resumed epoch is a fit of its own (fit reads the length of an epoch once), as the trainer does it.
    resumed = Recorded(images, labels, Feed(8, seed=5), Epochs(1, 2, first_step=2))
    model.fit(resumed, epochs=2, initial_epoch=1, verbose=0, shuffle=False, callbacks=[EpochOrder(resumed)])
    assert sorted(read) == [(1, 0), (1, 1), (1, 2)]
    assert sum((read[1, i] for i in range(3)), []) == order.permutation(40, 5, 1)[16:].tolist()  # from step 3 on


def _labels_of_epochs(dataset, epochs):
    """The labels each epoch reads, as fit reads them (a PyDataset told of each epoch's end)."""
    if isinstance(dataset, keras.utils.PyDataset):
        return [np.concatenate([y for _, y in _epoch(dataset)]).tolist() for _ in range(epochs)]
    labels = np.concatenate([np.asarray(y) for _, y in dataset]).tolist()
    size = len(labels) // epochs
    return [labels[e * size:(e + 1) * size] for e in range(epochs)]


def test_training_batches_read_each_epochs_seeded_order_from_any_step():
    images, labels = _data(10)
    expected = [order.permutation(10, 3, epoch)[:8].tolist() for epoch in (0, 1)]
    whole = _labels_of_epochs(training_batches(images, labels, Feed(4, seed=3), Epochs(0, 2)), 2)
    assert whole == expected  # epoch e's order is the seed's and e's alone, cut to whole batches
    resumed = training_batches(images, labels, Feed(4, seed=3), Epochs(1, 2, first_step=1))
    assert _labels_of_epochs(resumed, 1) == [expected[1][4:]]  # mid-epoch: the batches an uninterrupted run reads next
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
