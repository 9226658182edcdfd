import numpy as np
import pytest

from alexnet.data import Dataset
from alexnet.data.splits import make_splits, resolve_val_size
from alexnet.errors import AlexnetError, UsageError


def _dataset(n_train=200, n_test=50, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset(
        rng.integers(0, 256, size=(n_train, 4, 4, 3), dtype=np.uint8), np.arange(n_train) % 10,
        rng.integers(0, 256, size=(n_test, 4, 4, 3), dtype=np.uint8), np.arange(n_test) % 10,
        [str(i) for i in range(10)], source="random")


@pytest.mark.parametrize("kwargs,sizes", [
    ({}, (180, 20, 50)),  # 10% of a source smaller than 50,000 (the user gave no --val-size)
    ({"val_size": 200}, None),  # as many as the source has: refused below
    ({"val_size": 20}, (180, 20, 50)),
    ({"limit_train": 90}, (90, 10, 50)),  # the tutorial's 9:1
    ({"limit_train": 90, "val_size": 30}, (90, 30, 50)),
    ({"val_size": 20, "limit_test": 7}, (180, 20, 7)),
    ({"val_size": 0}, (200, 0, 50)),  # no validation: every training image trains
    ({"val_size": -1}, None),
])
def test_split_sizes(kwargs, sizes):
    if sizes is None:
        with pytest.raises(UsageError, match="--val-size"):
            make_splits(_dataset(), **kwargs)
        return
    splits = make_splits(_dataset(), **kwargs)
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == sizes
    assert len(splits.y_train) == sizes[0] and len(splits.y_test) == sizes[2]


def test_default_validation_is_5000_of_50000():
    dataset = _dataset(n_train=50_000, n_test=10)
    splits = make_splits(dataset)
    assert (len(splits.x_train), len(splits.x_val)) == (45_000, 5_000)


def test_splits_are_disjoint_and_cover_the_training_images():
    splits = make_splits(_dataset(), val_size=40, seed=3)
    assert not set(splits.train_index) & set(splits.val_index)
    assert sorted([*splits.train_index, *splits.val_index]) == list(range(200))
    # The images travel with their labels.
    dataset = _dataset()
    np.testing.assert_array_equal(splits.x_val, dataset.x_train[splits.val_index])
    np.testing.assert_array_equal(splits.y_val, dataset.y_train[splits.val_index])


def test_splits_are_seeded():
    a, b, c = (make_splits(_dataset(), val_size=40, seed=s, limit_test=10) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.val_index, b.val_index)
    np.testing.assert_array_equal(a.test_index, b.test_index)
    assert not np.array_equal(a.val_index, c.val_index)


def test_limited_test_split_is_a_sample_not_the_first_rows():
    dataset = _dataset(n_test=1000)
    dataset.y_test = np.repeat(np.arange(10), 100)  # class-sorted, as in an image folder
    splits = make_splits(dataset, val_size=20, limit_test=100)
    assert len(set(splits.y_test.tolist())) == 10


def test_a_test_set_that_repeats_the_training_images_is_refused():
    dataset = _dataset()
    dataset.x_test = dataset.x_train[:50].copy()
    with pytest.raises(AlexnetError, match="also appear in the training"):
        make_splits(dataset, val_size=20)


def test_a_rare_duplicate_is_counted_not_refused():
    dataset = _dataset(n_test=500)
    dataset.x_test[0] = dataset.x_train[5]
    splits = make_splits(dataset, val_size=20)
    assert splits.test_duplicates == 1


@pytest.mark.parametrize("n_train,expected", [(4000, 400), (50000, 5000), (80000, 5000), (15, 1)])
def test_default_validation_adapts_to_small_sources(n_train, expected, capsys):
    assert resolve_val_size(None, None, n_train) == expected
    said = capsys.readouterr().err
    assert (f"holding out {expected} of the {n_train}" in said) == (expected < 5000)
