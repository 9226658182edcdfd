"""Streaming on the TensorFlow backend: a tf.data pipeline that reads, decodes and crops in the graph.

The rows each process reads come from `alexnet.pipeline.order` (computed once an epoch);
each file is read with `tf.io.read_file` and decoded at its crop
(`decode_and_crop_jpeg` for JPEGs, the other formats decoded whole), in a
parallel map. An image with more pixels than `images.pixel_limit` (a
decompression bomb: a 400 KB PNG of 20000x20000) is refused before it is
decoded: a JPEG by its header in the graph, another format by PIL reading its
header, the one Python call per image. A file that cannot be read, decoded or
is refused is dropped by `ignore_errors`; a per-batch check in Python compares
the rows that arrive with the rows asked for, and names and counts the missing ones.
"""

import itertools
import os

import numpy as np
import tensorflow as tf

from alexnet.data.images import pixel_limit, too_large


def _decode(path, transform, seed):
    """A file -> uint8 (height, width, 3), transformed (`streams.Transform`); seed: stateless, shape (2,)."""
    contents = tf.io.read_file(path)
    size = tf.constant(transform.size, tf.int32)
    crop_window = _window(contents, transform, seed)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(contents)
        with tf.control_dependencies([_within_limit(tf.cast(shape[0], tf.int64) * tf.cast(shape[1], tf.int64))]):
            return tf.io.decode_and_crop_jpeg(contents, crop_window(shape), channels=3)

    def other():
        refused = tf.numpy_function(lambda p: np.bool_(too_large(os.fsdecode(np.asarray(p).item()))), [path], tf.bool,
                                    stateful=False)
        with tf.control_dependencies([tf.debugging.assert_equal(refused, False, message=TOO_LARGE)]):
            return _crop(_decode_other(contents), crop_window)

    image = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    if transform.mirror:
        image = tf.reverse(image, axis=[1])
    elif transform.flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    image.set_shape((*transform.size, 3))
    return image


TOO_LARGE = "more pixels than the decoding limit"


def _within_limit(pixels):
    limit = pixel_limit()
    return tf.debugging.assert_less_equal(pixels, tf.constant(limit, tf.int64), message=TOO_LARGE) if limit else \
        tf.no_op()


def _decode_other(contents):
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)  # PNG, GIF, BMP, WebP
    image.set_shape([None, None, 3])
    return image


def _crop(image, crop_window):
    window = crop_window(tf.shape(image))
    return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])


def _window(contents, transform, seed):
    """A function of the image's shape (height, width, channels) -> its crop window [top, left, height, width]."""

    def whole(shape):
        return tf.stack([0, 0, shape[0], shape[1]])

    geometry = transform.geometry

    def center(shape):
        side = tf.maximum(1, tf.cast(tf.round(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * geometry.center),
                                     tf.int32))
        return tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side, side])

    def random_resized(shape):
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.cast(shape, tf.int32), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
            min_object_covered=0.0, aspect_ratio_range=geometry.ratio, area_range=geometry.area, max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        return tf.stack([begin[0], begin[1], extent[0], extent[1]])

    return {"resize": whole, "center": center, "random-resized": random_resized}[transform.crop]


class _Audit:
    """Per batch, in Python: the rows asked for that did not arrive were dropped (unreadable): name and count them.

    tf.data keeps the order (deterministic map), so a missing row is a gap
    between the rows expected and the rows delivered.
    """

    def __init__(self, index, skips, expected_epochs):
        self.index, self.skips, self.expected = index, skips, expected_epochs  # expected: iterator of (epoch, rows)
        self._epoch, self._rows, self._at = None, np.zeros(0, np.int64), 0

    def _next_expected(self):
        while self._at >= len(self._rows):
            self._epoch, self._rows = next(self.expected)
            self._at = 0
        self._at += 1
        return self._epoch, int(self._rows[self._at - 1])

    def __call__(self, epochs, rows):
        for epoch, row in zip(epochs.tolist(), rows.tolist()):
            wanted = self._next_expected()
            while wanted != (epoch, row):
                if wanted[1] >= 0:  # padding (-1) is never read
                    self.skips.skip(self.index.path(wanted[1]), "unreadable, not an image, or over the decoding "
                                    f"limit of {pixel_limit()} pixels (tf.data could not read or decode it)",
                                    wanted[0], wanted[1])
                wanted = self._next_expected()
        return np.int64(len(rows))


def _stream(index, labels, feed, epochs, rows_of):
    """(epoch, row) pairs -> files -> batches of (images, labels, weights); epochs: their numbers (-1: evaluation),
    rows_of(epoch): this process's rows of one."""
    transform, seed, num_classes = feed.transform, feed.seed, feed.num_classes
    paths = tf.constant(index.full_paths())
    labels = tf.constant(np.asarray(labels, np.int64))
    n = len(index)

    def epoch_rows(epoch):
        rows = tf.numpy_function(lambda e: rows_of(int(e)), [epoch], tf.int64, stateful=False)
        rows.set_shape([None])
        return tf.data.Dataset.from_tensor_slices(rows).map(lambda row: (epoch, row))

    def load(epoch, row):
        padding = row < 0
        row_or_0 = tf.maximum(row, 0)
        image = tf.cond(padding, lambda: tf.zeros((*transform.size, 3), tf.uint8),
                        lambda: _decode(paths[row_or_0], transform,
                                        tf.stack([tf.cast(seed, tf.int64), epoch * n + row_or_0])))
        label = labels[row_or_0]
        label = tf.one_hot(label, num_classes) if num_classes else label
        return image, label, tf.where(padding, 0.0, 1.0), epoch, row

    expected = ((epoch, rows_of(epoch)) for epoch in epochs)
    # Evaluation is read again every epoch, in the same order: its rows are expected again and again.
    audit = _Audit(index, feed.skips, itertools.cycle(expected) if list(epochs) == [-1] else expected)

    def check(images, labels, weights, epochs_, rows):
        counted = tf.numpy_function(audit, [epochs_, rows], tf.int64, stateful=True)
        with tf.control_dependencies([counted]):
            return tf.identity(images), labels, weights

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(list(epochs), tf.int64)).flat_map(epoch_rows)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    return dataset.batch(feed.batch).map(check).prefetch(tf.data.AUTOTUNE)


def training_stream(index, labels, feed, epochs):
    """See `streams.training_stream`."""
    return _stream(index, labels, feed, range(epochs.first, epochs.stop + 1),  # one epoch of slack: a dropped
                   lambda epoch: epochs.rows(feed, len(index), epoch))  # file moves later rows forward


def evaluation_stream(index, labels, feed):
    """See `streams.evaluation_stream`."""
    feed = feed.for_evaluation(len(index))
    return _stream(index, labels, feed, [-1], lambda epoch: feed.evaluation_rows(len(index)))
