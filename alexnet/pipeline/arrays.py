"""In-memory splits as batches: uint8 images in, uint8 batches out.

The pipeline moves small uint8 images; the standardization and the resize to
227x227 happen inside the model, on the device. The tutorial shuffled
preprocessed 227x227 float images (about 28 GB for 45,000 of them); here each
epoch permutes image *indices* over the whole split (a perfect shuffle,
8 bytes an image) and each batch is one gather.

The rows come from `alexnet.pipeline.order` through a `Feed`, as they do for
streamed files. On the TensorFlow backend the batches are a `tf.data` pipeline
(TensorFlow-only code stays in `_tf_batches`); on JAX and PyTorch an
`ArrayBatches` (a `keras.utils.PyDataset`) over the same arrays, so those
backends need no TensorFlow at all.
"""

import keras
import numpy as np


def training_batches(images, labels, feed, epochs):
    """Training batches of (uint8 images (B, H, W, C), labels) for `model.fit(..., initial_epoch=epochs.first,
    epochs=epochs.stop)`.

    Epoch e reads `feed.training_rows(n, e)` (`order.epoch_rows`), whatever came
    before, so a run resumed at an epoch's end or in the middle of one reads
    exactly what an uninterrupted run would have. On TensorFlow it is one
    `tf.data` pipeline over the epochs: give fit `steps_per_epoch` (the first
    epoch has `epochs.first_step` fewer, so fit it on its own). Elsewhere an
    `ArrayBatches` that knows its length.

    Args:
        images: uint8 array (N, H, W, C), kept in memory once.
        labels: int array (N,).
        feed: a `feed.Feed`.
        epochs: a `feed.Epochs`.
    """
    if keras.backend.backend() != "tensorflow":
        return ArrayBatches(images, labels, feed, epochs)
    import tensorflow as tf  # TensorFlow backend only

    def epoch_batches(epoch):  # each epoch's rows are drawn as it comes
        rows = tf.numpy_function(lambda e: epochs.rows(feed, len(labels), int(e)), [epoch], tf.int64, stateful=False)
        rows.set_shape([None])
        return tf.data.Dataset.from_tensor_slices(rows).batch(feed.batch)

    return _tf_batches(images, labels, feed, tf.data.Dataset.range(epochs.first, epochs.stop).flat_map(epoch_batches))


def evaluation_batches(images, labels, feed):
    """Batches of (images, labels, weights) of every image once, in order, for `evaluate` and `predict`.

    Every batch has the same size (`order.evaluation_batch`), so that the step
    compiles once: the last one is padded with copies of the first image of
    weight 0, so that each image counts exactly once (predictions of the
    padding come last: cut them off).
    """
    feed = feed.for_evaluation(len(labels))
    if keras.backend.backend() != "tensorflow":
        return ArrayBatches(images, labels, feed)
    import tensorflow as tf  # TensorFlow backend only

    rows = tf.data.Dataset.from_tensor_slices(feed.evaluation_rows(len(labels))).batch(feed.batch)  # a known length
    return _tf_batches(images, labels, feed, rows, weighted=True)


def _gather(images, labels, rows, num_classes):
    """(images, labels, weights) of `rows`: -1 (padding) reads row 0 and weighs 0.

    The one gather of both engines: in NumPy for `ArrayBatches`, in TensorFlow's NumPy API inside tf.data.
    """
    xp = np if isinstance(rows, np.ndarray) else _tf_numpy()
    weights = xp.where(rows >= 0, np.float32(1), np.float32(0))
    rows = xp.maximum(rows, 0)
    batch_labels = xp.take(labels, rows, axis=0)
    if num_classes:  # one-hot, for label smoothing
        batch_labels = xp.take(xp.eye(num_classes, dtype=np.float32), batch_labels, axis=0)
    return xp.take(images, rows, axis=0), batch_labels, weights


def _tf_numpy():
    import tensorflow as tf  # TensorFlow backend only

    return tf.experimental.numpy


def _tf_batches(images, labels, feed, rows, weighted=False):
    """A tf.data pipeline of the batches of `rows` (a tf.data.Dataset of batches of row numbers), each one gather."""
    import tensorflow as tf  # TensorFlow backend only

    images, labels = tf.constant(images), tf.constant(np.asarray(labels, np.int64))

    def gather(batch_rows):
        x, y, weights = _gather(images, labels, batch_rows, feed.num_classes)
        return (x, y, weights) if weighted else (x, y)

    return rows.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


class ArrayBatches(keras.utils.PyDataset):
    """Seeded batches of in-memory arrays, for the JAX and PyTorch backends.

    Training (given `epochs`): epoch e reads `feed.training_rows(n, e)`, the first
    epoch without its first `epochs.first_step` batches (a mid-epoch resume); fit
    must be given `EpochOrder(batches)` among its callbacks, which says when an
    epoch begins. Evaluation (`epochs` None): every row once, `feed.evaluation_rows`.
    """

    def __init__(self, images, labels, feed, epochs=None):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.labels, self.feed, self.epochs = images, np.asarray(labels, dtype=np.int64), feed, epochs
        self.set_epoch(epochs.first if epochs is not None else -1)

    def set_epoch(self, epoch):
        """Reads `epoch` from now on (-1: evaluation)."""
        n, self.epoch = len(self.labels), epoch
        self._rows = self.epochs.rows(self.feed, n, epoch) if self.epochs is not None else self.feed.evaluation_rows(n)

    def __len__(self):
        return -(-len(self._rows) // self.feed.batch)

    def __getitem__(self, index):
        rows = self._rows[index * self.feed.batch:(index + 1) * self.feed.batch]
        images, labels, weights = _gather(self.images, self.labels, rows, self.feed.num_classes)
        return (images, labels, weights) if self.epochs is None else (images, labels)


class EpochOrder(keras.callbacks.Callback):
    """Tells training `ArrayBatches` which epoch begins, from fit's own epoch number.

    Why not the PyDataset's hooks: `fit` calls `on_epoch_end` once before its
    first epoch, and on JAX it also runs a pass of `on_epoch_begin`, one batch and
    `on_epoch_end` to build the model: counting them gave the first epoch the
    second epoch's order, and a mid-epoch resume the wrong rows.
    """

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)
