"""Train / validation / test splits: seeded, disjoint, checked."""

import dataclasses
import hashlib
import logging
from typing import Optional

import numpy as np

from alexnet import console
from alexnet.data import FileIndex, load_dataset
from alexnet.errors import AlexnetError, UsageError
from alexnet.settings import recipes

log = logging.getLogger(__name__)

TUTORIAL_VAL_SIZE = 5000  # images held out of CIFAR-10's 50,000 training images
TUTORIAL_VAL_RATIO = 9  # 45,000 train : 5,000 validation
# What resolve_val_size does without --val-size, for --help and the docs.
VAL_SIZE_RULE = (f"10% of the training images, at most {TUTORIAL_VAL_SIZE:,} (CIFAR-10: 45,000 train, 5,000 "
                 f"validation); with --limit-train N: N/{TUTORIAL_VAL_RATIO}")


@dataclasses.dataclass
class Splits:
    """The three splits as uint8 images and int64 labels, with their indices into the source."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    train_index: np.ndarray  # rows of the source's training images
    val_index: np.ndarray  # rows of the source's training images
    test_index: np.ndarray  # rows of the source's test images
    test_duplicates: Optional[int] = 0  # test images also in train or validation, pixel for pixel (None: streamed)
    source: str = ""  # what was loaded (data.Dataset.source)
    skipped: list = dataclasses.field(default_factory=list)  # unreadable files left out of the source
    class_ids: list = dataclasses.field(default_factory=list)  # the source's folder names (ImageNet's wnids), if any


def resolve_val_size(val_size, limit_train, n_train=None):
    """The validation size: as given, else N/9 of a training split capped at N (--limit-train), else
    10% of the source's training images, at most the tutorial's 5,000 (5,000 of CIFAR-10's 50,000)."""
    if val_size is not None:
        return val_size
    if limit_train is not None:
        return max(1, limit_train // TUTORIAL_VAL_RATIO)
    if n_train is not None and n_train // 10 < TUTORIAL_VAL_SIZE:
        chosen = max(1, n_train // 10)
        console.note(log, f"holding out {chosen} of the {n_train} training images for validation (10%; "
                          "--val-size sets another number)")
        return chosen
    return TUTORIAL_VAL_SIZE


def make_splits(dataset, val_size=None, seed=0, limit_train=None, limit_test=None, test_only=False):
    """Splits a `Dataset` into train, validation and test.

    The validation images are a seeded random sample of the source's training
    images; the training split is the rest, capped at `limit_train`; the test
    split is the source's test images, a seeded random sample of `limit_test`
    of them if given (never the first N, which in a class-sorted folder would
    be a single class). With test_only, train and validation are empty.

    Raises:
        UsageError: If the sizes do not fit the data.
        AlexnetError: If the splits are not disjoint.
    """
    n_train, n_test = len(dataset.x_train), len(dataset.x_test)
    if test_only:
        n_train, empty = 0, np.zeros(0, dtype=np.int64)
        test_index = test_indices(n_test, seed, limit_test)
        return Splits(dataset.x_train[empty], dataset.y_train[empty], dataset.x_train[empty], dataset.y_train[empty],
                      dataset.x_test[test_index], dataset.y_test[test_index], list(dataset.class_names), empty,
                      empty, test_index, source=dataset.source, skipped=list(dataset.skipped),
                      class_ids=list(dataset.class_ids))
    val_size = resolve_val_size(val_size, limit_train, n_train)
    if val_size < 0 or val_size >= n_train:
        raise UsageError(f"--val-size must be between 0 (no validation) and {n_train - 1} (the source has "
                         f"{n_train} training images). Received: {val_size}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_train)
    val_index, train_index = order[:val_size], order[val_size:]
    if limit_train is not None:
        if limit_train > len(train_index):
            console.note(log, f"--limit-train {limit_train} is more than the {len(train_index)} training images "
                              "left after validation; using all of them")
        train_index = train_index[:limit_train]
    test_index = test_indices(n_test, seed, limit_test)
    train_index, val_index = np.sort(train_index), np.sort(val_index)

    splits = Splits(
        dataset.x_train[train_index], dataset.y_train[train_index],
        dataset.x_train[val_index], dataset.y_train[val_index],
        dataset.x_test[test_index], dataset.y_test[test_index],
        list(dataset.class_names), train_index, val_index, test_index,
        source=dataset.source, skipped=list(dataset.skipped), class_ids=list(dataset.class_ids),
    )
    splits.test_duplicates = check_disjoint(splits)
    return splits


def load_splits(data="cifar10", val_size=None, seed=42, limit_train=None, limit_test=None, storage_size=None,
                strict=False, test_only=False, stream=None, crops=False):
    """Loads a dataset and splits it: the one way training, evaluation, export and the benchmarks get splits.

    Args:
        data: a `--data` value (see `load_dataset`).
        val_size: validation images held out of the training images; None: 10% of them, at most 5,000
            (or limit_train / 9).
        seed: the seed of the split and of the test sample (`TrainConfig.seed`).
        limit_train: a cap on training images after validation is taken out.
        limit_test: a cap on test images (a seeded random sample).
        storage_size: (height, width) to store images at; None: the source's own.
        strict: unreadable image files are an error instead of skipped.
        test_only: only the test split is needed (evaluation): train and validation are empty, and an
            image folder may lack train/.
        stream: image folders: True streams from disk (the splits hold `FileIndex`es), False decodes into
            memory, None streams what would not fit.
        crops: the recipe crops files in the pipeline: image folders stream unless stream=False.

    Returns:
        The `Splits`: uint8 images and int64 labels of train, validation and test, and the class names.

    Raises:
        UsageError: If the path holds no dataset or the sizes do not fit it.
        AlexnetError: If the data cannot be read, or the splits overlap.
    """
    dataset = load_dataset(data, storage_size=storage_size, strict=strict, test_only=test_only, stream=stream,
                           crops=crops)
    return make_splits(dataset, val_size=val_size, seed=seed, limit_train=limit_train, limit_test=limit_test,
                       test_only=test_only)


def splits_for(config, test_only=False):
    """The splits of a run's settings (a TrainConfig), as `alexnet train` makes them."""
    return load_splits(config.data, val_size=config.val_size, seed=config.seed, limit_train=config.limit_train,
                       limit_test=config.limit_test, storage_size=config.storage_size, strict=config.strict,
                       test_only=test_only, stream=config.stream,
                       crops=recipes.get(config.recipe).crops_in_pipeline)


def test_indices(n_test, seed=0, limit_test=None):
    """Rows of the test split: all of them, or a seeded random sample of `limit_test` rows, sorted."""
    if limit_test is None or limit_test >= n_test:
        return np.arange(n_test)
    return np.sort(np.random.default_rng([seed, 1]).permutation(n_test)[:limit_test])


def _digest(image):
    return hashlib.blake2b(image.tobytes(), digest_size=16).digest()


def check_disjoint(splits, max_test_duplicates=0.01):
    """Checks that no image is in two splits; returns the number of test images also seen in training.

    Train and validation are disjoint by construction (two slices of one
    permutation; the tests prove it). The test images come from another pool; a
    few may still equal a training image pixel for pixel, which is reported.
    More than `max_test_duplicates` of them means the test folder largely
    repeats the training one, and the test figures would be meaningless: that
    is an error.

    Streamed splits (`FileIndex`) are disjoint by their files, and not compared
    pixel for pixel (that would read every file): None.

    Raises:
        AlexnetError: If the test images largely repeat the training images.
    """
    if isinstance(splits.x_test, FileIndex):
        return None
    seen = {_digest(image) for part in (splits.x_train, splits.x_val) for image in part}
    duplicates = sum(_digest(image) in seen for image in splits.x_test)
    if duplicates > max_test_duplicates * max(1, len(splits.x_test)):
        raise AlexnetError(f"{duplicates} of {len(splits.x_test)} test images also appear in the training or "
                           "validation split: the test set would not measure generalization. "
                           "Check that test/ and train/ hold different images.")
    return int(duplicates)
