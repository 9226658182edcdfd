"""Streaming on the JAX and PyTorch backends: Grain, with worker processes that decode with PIL.

No TensorFlow is needed. The rows each process reads come from `alexnet.pipeline.order`;
each file is decoded and transformed by `decode_transformed` (PIL) in Grain's
worker processes; batches come back to the main process, where the files that
could not be read are named and counted (`streams.SkippedFiles`). A file
that fails keeps its place in the batch as a black image of weight 0, so every
batch has the same shape (JAX compiles one step).

Worker processes import this module, which imports neither Keras nor a backend.
"""

import dataclasses
import math
import os

import numpy as np

from alexnet.data.images import open_rgb
from alexnet.settings.choices import stream_workers_setting

def workers():
    """Grain's decoding processes: $ALEXNET_STREAM_WORKERS (0: the main process decodes), else the cores up to 8."""
    given = stream_workers_setting()
    return given if given is not None else min(8, os.cpu_count() or 1)


# --- One file -------------------------------------------------------------------------------


def random_resized_box(height, width, rng, geometry, attempts=10):
    """(top, left, crop height, crop width): torchvision's RandomResizedCrop.get_params, with a numpy generator.

    A box of `geometry.area` of the image's area and an aspect ratio (width / height)
    in `geometry.ratio` (a `recipes.Crop`), log-uniform; after `attempts` misses,
    the centre crop of the whole image with its ratio clamped to the ratio range.
    """
    area, ratio = geometry.area, geometry.ratio
    for _ in range(attempts):
        target = height * width * rng.uniform(*area)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    image_ratio = width / height
    if image_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif image_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def center_box(height, width, center):
    """(top, left, side, side): the centre square that resizing the shorter side to S / center, then cropping
    S, keeps (in the image's own pixels)."""
    side = max(1, round(min(height, width) * center))
    return (height - side) // 2, (width - side) // 2, side, side


def decode_transformed(path, transform, rng=None):
    """One file as a uint8 (height, width, 3) image, transformed (`streams.Transform`); rng for training.

    JPEGs are decoded at a reduced scale where the crop allows it (PIL's draft
    mode, as decode_and_crop_jpeg saves work in tf.data).
    """
    from PIL import Image

    out_h, out_w = transform.size
    with open_rgb(path, draft_for=(out_w, out_h) if transform.crop == "resize" else None) as image:
        width, height = image.size
        if transform.crop == "random-resized":
            top, left, h, w = random_resized_box(height, width, rng, transform.geometry)
        elif transform.crop == "center":
            top, left, h, w = center_box(height, width, transform.geometry.center)
        else:
            top, left, h, w = 0, 0, height, width
        image = image.resize((out_w, out_h), Image.BILINEAR, box=(left, top, left + w, top + h))
        array = np.asarray(image, dtype=np.uint8)
    if transform.mirror or (transform.flip and rng.random() < 0.5):
        array = array[:, ::-1]
    return np.ascontiguousarray(array)


class _Load:
    """Grain's map: (epoch, row) -> (image, label, weight, epoch, row, error); a row of -1 is padding."""

    def __init__(self, index, labels, transform, seed, num_classes):
        self.index, self.labels, self.transform = index, np.asarray(labels, np.int64), transform
        self.seed, self.num_classes = seed, num_classes

    def __call__(self, element):
        epoch, row = (int(v) for v in element)
        label = self.labels[max(row, 0)]
        label = np.eye(self.num_classes, dtype=np.float32)[label] if self.num_classes else label
        blank = np.zeros((*self.transform.size, 3), np.uint8)
        if row < 0:
            return blank, label, np.float32(0), epoch, row, ""
        random = self.transform.flip or self.transform.crop == "random-resized"  # training: seeded by file and epoch
        rng = np.random.default_rng([self.seed, epoch, row, 11]) if random else None
        try:
            return decode_transformed(self.index.path(row), self.transform, rng), label, np.float32(1), epoch, row, ""
        except Exception as error:  # PIL and the OS raise many types; the run goes on
            return blank, label, np.float32(0), epoch, row, f"{type(error).__name__}: {error}"


class _Rows:
    """The (epoch, row) pairs this process reads, as a sequence Grain can index, epoch by epoch (`order`).

    epochs=None: evaluation, every row once (epoch -1). Picklable, for Grain's workers.
    """

    def __init__(self, n, feed, epochs=None):
        self.n, self.feed, self.epochs = n, dataclasses.replace(feed, skips=None), epochs  # skips hold a lock
        self.numbers = list(range(epochs.first, epochs.stop + 1)) if epochs else [-1]  # one epoch of slack
        self.per_epoch = len(self._rows(self.numbers[0]))
        self.done = epochs.first_step * feed.batch if epochs else 0  # rows of the first epoch read before a stop
        self._cached = (None, None)

    def _rows(self, epoch):
        if epoch < 0:
            return self.feed.evaluation_rows(self.n)
        return self.feed.training_rows(self.n, epoch)

    def __len__(self):
        return len(self.numbers) * self.per_epoch - self.done

    def __getitem__(self, k):
        which, position = divmod(k + self.done, self.per_epoch)
        epoch = self.numbers[which]
        if self._cached[0] != epoch:
            self._cached = (epoch, self._rows(epoch))
        return np.array([epoch, self._cached[1][position]], np.int64)


class _Audit:
    """Main-process map over batches: names and counts the files that failed, and drops the bookkeeping."""

    def __init__(self, index, skips):
        self.index, self.skips = index, skips

    def __call__(self, batch):
        images, labels, weights, epochs, rows, errors = batch
        for epoch, row, error in zip(epochs, rows, errors):
            if error:
                self.skips.skip(self.index.path(int(row)), str(error), int(epoch), int(row))
        return images, labels, weights


def _stream(rows, index, labels, feed):
    import grain  # the JAX and PyTorch extras install it

    load = _Load(index, labels, feed.transform, feed.seed, feed.num_classes)
    dataset = grain.MapDataset.source(rows).map(load).batch(feed.batch).to_iter_dataset()
    if workers() > 0:
        from absl import flags  # Grain's workers read absl flags, which only an absl program parses

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers()))
    return dataset.map(_Audit(index, feed.skips))


def training_stream(index, labels, feed, epochs):
    """See `streams.training_stream`."""
    return _stream(_Rows(len(index), feed, epochs), index, labels, feed)


def evaluation_stream(index, labels, feed):
    """See `streams.evaluation_stream`."""
    feed = feed.for_evaluation(len(index))
    return _stream(_Rows(len(index), feed), index, labels, feed)
