"""Streaming image files from disk: tf.data on the TensorFlow backend, Grain on JAX and PyTorch.

A streamed split is a `data.index.FileIndex` (paths) and its labels; the
engines read and decode the files as training goes, each process its own
shard (`alexnet.pipeline.order`), in bounded memory. What a file becomes is a
`Transform`:

- "resize": the whole image resized to the storage size (CIFAR-style data; the
  model's shift-and-flip augmentation then applies, as in memory);
- "random-resized": training on full-size photos: a random crop of 8-100% of the
  area with an aspect ratio of 3/4-4/3, resized to the model's input, and a
  horizontal flip (the ImageNet standard, as recipe values);
- "center": evaluation on full-size photos: the shorter side resized to
  size / 0.875, then the centre crop (as torchvision does).

Standardization stays in the model, so a saved model takes uint8 images at its
input size whatever the pipeline. Every batch is (images, labels, weights);
weight 0 marks evaluation padding or a file that could not be read. A file
that fails mid-epoch is skipped with a warning that names it, and counted
(`SkippedFiles` prints the count at the end of each epoch); with strict=True
it is an error.
"""

import dataclasses
import logging
import threading
from collections import defaultdict

from alexnet.errors import AlexnetError

log = logging.getLogger(__name__)

CROPS = ("resize", "random-resized", "center")
STRICT_MARK = "--strict makes an unreadable file an error"  # ends the message of a strict read failure


@dataclasses.dataclass(frozen=True)
class Transform:
    """How one file becomes a uint8 (height, width, 3) image."""

    size: tuple  # (height, width) out
    crop: str = "resize"  # one of CROPS
    flip: bool = False  # random horizontal flip (training)
    mirror: bool = False  # always flip (test-time augmentation)
    area: tuple = (0.08, 1.0)  # random-resized: fraction of the image's area
    ratio: tuple = (3 / 4, 4 / 3)  # random-resized: width / height
    center: float = 0.875  # center: the crop's side over the resized shorter side


class SkippedFiles:
    """Files that could not be read during a run, counted by epoch (epoch -1: evaluation), named as they come.

    Engines call `skip` from their reading threads or the main process; the
    training callback `callbacks.SkippedFileCount` says the count as each epoch ends.
    """

    def __init__(self, strict=False):
        self.strict = strict
        self.counts = defaultdict(int)
        self.rows = defaultdict(set)  # epoch -> rows of the split that were skipped
        self._lock = threading.Lock()

    def skip(self, path, reason, epoch=-1, row=None):
        if self.strict:
            raise AlexnetError(f"cannot read {path} ({reason}); {STRICT_MARK}")
        with self._lock:
            self.counts[epoch] += 1
            if row is not None:
                self.rows[epoch].add(int(row))
        log.warning(f"skipped {path}: {reason}")


def strict_message(text):
    """The line of a strict read failure in an error that tf.data wrapped (with its own words around it)."""
    line = next((line for line in text.splitlines() if STRICT_MARK in line), text)
    start = line.find("cannot read ")
    return line[start if start >= 0 else 0:line.index(STRICT_MARK) + len(STRICT_MARK)]


def training_stream(index, labels, global_batch, *, seed, first_epoch, epochs, shard, transform, num_classes, skips,
                    first_step=0):
    """Batches of (images, labels, weights) for `model.fit` over epochs first_epoch..epochs-1, with one epoch of
    slack at the end (a skipped file moves later rows forward); fit must be given `steps_per_epoch`. The first
    epoch starts at step `first_step` (a mid-epoch resume: the rows an uninterrupted run would read next).

    Args:
        index: the training split's `FileIndex`.
        labels: int64 (N,).
        global_batch: images per step, all processes together.
        seed: the run's seed (the order of each epoch, and the random crops and flips).
        first_epoch: the first epoch to read (a resumed run's).
        epochs: the run's total epochs.
        shard: (this process, processes).
        transform: a `Transform`.
        num_classes: labels become one-hot vectors of this many classes, if given.
        skips: a `SkippedFiles`.
    """
    return _engine().training_stream(index, labels, global_batch, seed=seed, first_epoch=first_epoch, epochs=epochs,
                                     shard=shard, transform=transform, num_classes=num_classes, skips=skips,
                                     first_step=first_step)


def evaluation_stream(index, labels, global_batch, *, shard, transform, num_classes, skips, replicas=1):
    """Batches of (images, labels, weights) of every image once, in order; the last batch padded with weight 0
    to a multiple of `replicas` (devices), as in memory."""
    return _engine().evaluation_stream(index, labels, global_batch, shard=shard, transform=transform,
                                       num_classes=num_classes, skips=skips, replicas=replicas)


def _engine():
    import keras  # the backend is chosen by now: streams are made by the trainer and the evaluation

    if keras.backend.backend() == "tensorflow":
        from alexnet.pipeline import tf_engine

        return tf_engine
    from alexnet.pipeline import grain_engine

    return grain_engine


def transforms(recipe, stored_size, image_size):
    """(training, evaluation) `Transform`s of a streamed split under `recipe` (recipes.Recipe).

    "random-resized" recipes crop in the pipeline to the model's input
    (image_size); the others resize each file to the storage size, as the
    in-memory path stores it, and leave augmentation to the model.
    """
    if recipe.crop == "random-resized":
        size = (image_size, image_size)
        return (Transform(size, "random-resized", flip=recipe.flip, area=recipe.crop_area, ratio=recipe.crop_ratio),
                Transform(size, "center", center=recipe.center_crop))
    return Transform(tuple(stored_size)), Transform(tuple(stored_size))


def decoded(index, rows, transform):
    """uint8 images (len(rows), H, W, 3) of a few files (pictures, export checks), decoded with PIL."""
    import numpy as np

    from alexnet.pipeline.grain_engine import decode_transformed

    return np.stack([decode_transformed(index.path(int(row)), transform) for row in rows]) if len(rows) else \
        np.zeros((0, *transform.size, 3), np.uint8)
