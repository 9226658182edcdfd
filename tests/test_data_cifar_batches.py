import os
import pickle

import numpy as np
import pytest
from data_helpers import write_batches

from alexnet import data
from alexnet.data import cifar_batches
from alexnet.errors import AlexnetError


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_are_read_as_images(tmp_path, protocol):
    images, labels = write_batches(tmp_path / "cifar-10-batches-py", protocol=protocol)
    dataset = data.load_dataset(str(tmp_path))  # the parent folder is found too
    assert dataset.class_names == list(cifar_batches.CIFAR10_CLASSES)
    assert dataset.x_train.shape == (20, 32, 32, 3)
    # CIFAR rows hold the red plane, then green, then blue (channels first).
    np.testing.assert_array_equal(dataset.x_train[3, :, :, 1].reshape(-1), images[3, 1024:2048])
    assert dataset.y_train.tolist() == labels


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_a_command_is_refused_and_nothing_runs(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_batches(folder)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _RunsACommand(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(AlexnetError, match="refused to load .*system"):
        data.load_dataset(str(folder))
    assert not marker.exists()


def test_truncated_batch_is_a_clear_error(tmp_path):
    folder = tmp_path / "b"
    write_batches(folder)
    content = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(content[: len(content) // 2])
    with pytest.raises(AlexnetError, match="truncated or corrupt"):
        data.load_dataset(str(folder))


def test_labels_out_of_range_are_refused(tmp_path):
    folder = tmp_path / "b"
    write_batches(folder, n=3, labels=[0, 10, 3])
    with pytest.raises(AlexnetError, match=r"labels out of range 0..9: \[10\]"):
        data.load_dataset(str(folder))


def test_cifar_batch_pixel_values_above_255_are_refused_with_the_file(tmp_path):
    folder = tmp_path / "b"
    write_batches(folder, n=3)
    batch = {b"data": np.full((3, 3072), 300, dtype=np.int64), b"labels": [0, 1, 2]}
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(AlexnetError, match=r"data_batch_1: pixel values must be whole numbers 0..255; found 300"):
        data.load_dataset(str(folder))


def test_cifar_batch_string_labels_are_refused_with_the_file(tmp_path):
    folder = tmp_path / "b"
    write_batches(folder, n=3)
    batch = {b"data": np.zeros((3, 3072), dtype=np.uint8), b"labels": ["cat", "dog", "cat"]}
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(AlexnetError, match=r"data_batch_1: labels must be integers 0..9; found str"):
        data.load_dataset(str(folder))
