"""Streaming image files from disk: tf.data on the TensorFlow backend, Grain on JAX and PyTorch.

A streamed split is a `data.index.FileIndex` (paths) and its labels; the
engines read and decode the files as training goes, each process its own
shard (`alexnet.pipeline.order`), in bounded memory. What a file becomes is a
`Transform`:

- "resize": the whole image resized to the storage size (CIFAR-style data; the
  model's shift-and-flip augmentation then applies, as in memory);
- "random-resized": training on full-size photos: a random crop, resized to the
  model's input, and a horizontal flip (the ImageNet standard; its numbers are
  the recipe's `recipes.Crop`);
- "center": evaluation on full-size photos: the shorter side resized to
  size / `Crop.center`, then the centre crop (as torchvision does).

How a file becomes the model's input is decided here alone, for training
(`transforms`), evaluation (`evaluation_transform`) and prediction (`decoder`).

Standardization stays in the model, so a saved model takes uint8 images at its
input size whatever the pipeline. Every batch is (images, labels, weights);
weight 0 marks evaluation padding or a file that could not be read. A file
that fails mid-epoch is skipped with a warning that names it, and counted
(`SkippedFiles` prints the count at the end of each epoch); with strict=True
it is an error.
"""

import dataclasses
import importlib.util
import logging
import threading
from collections import defaultdict

import numpy as np

from alexnet.data.images import decode_image
from alexnet.errors import AlexnetError, UsageError
from alexnet.pipeline import grain_engine
from alexnet.pipeline.grain_engine import decode_transformed
from alexnet.settings import recipes

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
    geometry: recipes.Crop = recipes.Crop()  # random-resized and center: the crop's numbers


class SkippedFiles:
    """Files that could not be read during a run, counted by epoch (epoch -1: evaluation), named as they come.

    Engines call `skip` from their reading threads or the main process; the
    training callback `training.logs.SkippedFileCount` says the count as each epoch ends.
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


def training_stream(index, labels, feed, epochs):
    """Batches of (images, labels, weights) for `model.fit` over `epochs` (a `feed.Epochs`), with one epoch of
    slack at the end (a skipped file moves later rows forward); fit must be given `steps_per_epoch`. A mid-epoch
    resume starts at the rows an uninterrupted run would read next.

    Args:
        index: the training split's `FileIndex`.
        labels: int64 (N,).
        feed: a `feed.Feed` with its `transform` and `skips` (a `SkippedFiles`).
        epochs: a `feed.Epochs`.
    """
    return _engine().training_stream(index, labels, feed, epochs)


def evaluation_stream(index, labels, feed):
    """Batches of (images, labels, weights) of every image once, in order, all of one size (`order.evaluation_batch`);
    the last padded with weight 0, as in memory."""
    return _engine().evaluation_stream(index, labels, feed)


def _engine():
    import keras  # the backend is chosen by now: streams are made by the trainer and the evaluation

    return engine(keras.backend.backend())


def engine(backend):
    """The module that streams files on `backend`: tf.data's, or Grain's (UsageError, saying what to install,
    where Grain is missing)."""
    if backend == "tensorflow":
        from alexnet.pipeline import tf_engine  # imports TensorFlow: only on its backend

        return tf_engine
    if importlib.util.find_spec("grain") is None:
        raise UsageError(f"streaming image files on the {backend} backend needs Grain, which is not installed: "
                         f'pip install "alexnet[{backend}]" (or pip install grain), or stream with --backend '
                         "tensorflow")
    return grain_engine


def transforms(recipe, stored_size, image_size):
    """(training, evaluation) `Transform`s of a streamed split under `recipe` (a `recipes.Recipe`).

    Recipes that crop in the pipeline crop to the model's input (image_size);
    the others resize each file to the storage size, as the in-memory path
    stores it, and leave augmentation to the model.
    """
    if recipe.crops_in_pipeline:
        size = (image_size, image_size)
        return (Transform(size, "random-resized", flip=recipe.flip, geometry=recipe.geometry),
                Transform(size, "center", geometry=recipe.geometry))
    return Transform(tuple(stored_size)), Transform(tuple(stored_size))


def evaluation_transform(run, size, crop="resize"):
    """How a file becomes the input (of side `size`) of a model that a run trained: as the run evaluated its
    streamed files (the centre crop of a cropping recipe), else as the model's card says (`crop`).

    Args:
        run: the run's config.json, or {} for a model without its run.
        size: (height, width) the model takes.
        crop: the model card's: "resize" (the whole image) or "center" (torchvision's: the shorter side resized,
            then the centre crop).
    """
    recipe = recipes.get(run.get("settings", {}).get("recipe", "tutorial"))
    if run.get("data", {}).get("streamed") and recipe.crops_in_pipeline:
        return transforms(recipe, size, size[0])[1]
    return Transform(tuple(size), "center" if crop == "center" and not run else "resize")


def decoder(run, size, crop="resize"):
    """A function of a file's path -> the uint8 image that a model (of input `size`) from `run` (its config.json,
    or {}) takes: a streamed run's files as it evaluated them (`evaluation_transform`), else as the in-memory
    loader stores them, or as the model card says (`crop`) for a model without its run."""
    transform = evaluation_transform(run, size, crop)
    if transform.crop == "resize":
        return lambda file: decode_image(file, tuple(size))
    return lambda file: decode_transformed(file, transform)


def decoded(index, rows, transform):
    """(uint8 images (k, H, W, 3), the k rows they are) of a few files (pictures, checks), decoded with PIL; a file
    that cannot be read (or is over the decoding limit) is left out with a warning that names it."""
    images, kept = [], []
    for row in rows:
        try:
            images.append(decode_transformed(index.path(int(row)), transform))
            kept.append(int(row))
        except Exception as error:  # PIL and the OS raise many types
            log.warning(f"skipped {index.path(int(row))}: {type(error).__name__}: {error}")
    return (np.stack(images) if images else np.zeros((0, *transform.size, 3), np.uint8)), np.asarray(kept, np.int64)
