"""The input pipeline: uint8 images in, uint8 batches out.

The pipeline moves small uint8 images; the standardization and the resize to
227x227 happen inside the model, on the device. The tutorial shuffled
preprocessed 227x227 float images (about 28 GB for 45,000 of them); here the
shuffle permutes image *indices* over the whole split (a perfect shuffle,
8 bytes an image) and each batch is one gather.

On the TensorFlow backend this is a `tf.data` pipeline (TensorFlow-only code
stays in this module). On JAX and PyTorch it is a `keras.utils.PyDataset` over
the same arrays, so those backends need no TensorFlow at all.
"""

import keras
import numpy as np

from alexnet.pipeline import order


def make_dataset(images, labels, batch_size, shuffle=False, seed=None, num_classes=None, shard=(0, 1), replicas=1):
    """Returns batches of (uint8 images (B, H, W, C), labels) for `model.fit` / `predict`.

    Args:
        images: uint8 array (N, H, W, C), kept in memory once.
        labels: int array (N,).
        batch_size: images per batch; the last batch may be smaller.
        shuffle: reshuffle the whole split every epoch before batching.
        seed: seed of the shuffle order.
        num_classes: if given, labels become one-hot float vectors (for label smoothing).
        shard: (this process, processes): with several JAX processes each one feeds its share of every
            global batch (Keras's JAX trainer takes the per-process part); the order is the same in all.
        replicas: devices a global batch is split over (JAX data-parallel). A last batch that does not
            divide by it is cut to a multiple when shuffling (training), and otherwise (evaluation)
            padded with copies weighted 0, so that every image counts exactly once. tf.distribute
            handles uneven batches itself.
    """
    if keras.backend.backend() == "tensorflow":
        return _tf_dataset(images, labels, batch_size, shuffle, seed, num_classes)
    return ArrayBatches(images, labels, batch_size, shuffle, seed, num_classes, shard, replicas)


def training_batches(images, labels, batch_size, *, seed, first_epoch, epochs, first_step=0, num_classes=None,
                     shard=(0, 1), replicas=1):
    """Training batches for `model.fit(..., initial_epoch=first_epoch, epochs=epochs)`, from step `first_step` of
    the first epoch on.

    Epoch e reads the split in the order `order.permutation(n, seed, e)`, whatever
    came before, so a run resumed at an epoch's end or in the middle of one reads
    exactly what an uninterrupted run would have. On TensorFlow it is one
    `tf.data` pipeline over the epochs: give fit `steps_per_epoch` (the first
    epoch has `first_step` fewer, so fit it on its own). Elsewhere an
    `ArrayBatches` whose first epoch has `first_step` fewer steps.

    Args:
        images, labels, batch_size, num_classes, shard, replicas: as for `make_dataset`.
        seed: the run's seed.
        first_epoch: the first epoch read (0-based).
        epochs: the epoch to stop before.
        first_step: steps of the first epoch already done (a mid-epoch resume).
    """
    if keras.backend.backend() != "tensorflow":
        return ArrayBatches(images, labels, batch_size, True, seed, num_classes, shard, replicas,
                            epoch=first_epoch, first_step=first_step)
    import tensorflow as tf  # TensorFlow backend only

    n = len(labels)
    images, labels = tf.constant(images), tf.constant(labels, dtype=tf.int64)

    def epoch_batches(epoch):
        rows = tf.numpy_function(lambda e: order.permutation(n, seed, int(e)).astype(np.int64), [epoch], tf.int64,
                                 stateful=False)
        rows.set_shape([n])
        return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size)

    def gather(index):
        batch_labels = tf.gather(labels, index)
        if num_classes:
            batch_labels = tf.one_hot(batch_labels, num_classes)
        return tf.gather(images, index), batch_labels

    batches = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches).skip(first_step)
    return batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def _tf_dataset(images, labels, batch_size, shuffle, seed, num_classes):
    import tensorflow as tf

    images = tf.constant(images)
    labels = tf.constant(labels, dtype=tf.int64)
    rows = tf.data.Dataset.range(len(labels))
    if shuffle:
        rows = rows.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)

    def gather(index):
        batch_labels = tf.gather(labels, index)
        if num_classes:
            batch_labels = tf.one_hot(batch_labels, num_classes)
        return tf.gather(images, index), batch_labels

    batches = rows.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)


class ArrayBatches(keras.utils.PyDataset):
    """Seeded, reshuffled-every-epoch batches of in-memory arrays, for the JAX and PyTorch backends.

    With shuffle, epoch e (counted from `epoch`) reads `order.permutation(n, seed, e)`;
    the first epoch leaves out its first `first_step` batches (a mid-epoch resume).
    """

    def __init__(self, images, labels, batch_size, shuffle=False, seed=None, num_classes=None, shard=(0, 1),
                 replicas=1, epoch=0, first_step=0):
        super().__init__(workers=1, use_multiprocessing=False)
        self.shard, self.replicas = shard, replicas
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.batch_size, self.shuffle, self.num_classes = batch_size, shuffle, num_classes
        self.seed, self.epoch, self.skip = (0 if seed is None else seed), epoch, first_step
        self._order = self._epoch_order()

    def _epoch_order(self):
        return order.permutation(len(self.labels), self.seed, self.epoch) if self.shuffle else \
            np.arange(len(self.labels))

    def __len__(self):
        full, rest = divmod(len(self.labels), self.batch_size)
        if self.shuffle and self.replicas > 1 and rest < self.replicas:  # nothing left once cut to a multiple
            return max(1, full) - self.skip
        return full + (rest > 0) - self.skip

    def __getitem__(self, index):
        index += self.skip
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        weights = np.ones(len(rows), dtype=np.float32)
        uneven = len(rows) % self.replicas
        if uneven and self.shuffle:  # training: cut the last batch to a multiple of the devices
            keep = len(rows) - uneven  # > 0: __len__ leaves out a last batch smaller than the devices
            rows, weights = rows[:keep], weights[:keep]
        elif uneven:  # evaluation: pad with copies of the first row that count for nothing
            pad = self.replicas - uneven
            rows = np.concatenate([rows, np.repeat(rows[:1], pad)])
            weights = np.concatenate([weights, np.zeros(pad, dtype=np.float32)])
        rows, weights = rows[self.shard[0]::self.shard[1]], weights[self.shard[0]::self.shard[1]]
        labels = self.labels[rows]
        if self.num_classes:
            labels = np.eye(self.num_classes, dtype=np.float32)[labels]
        if self.replicas > 1:
            return self.images[rows], labels, weights
        return self.images[rows], labels

    def on_epoch_end(self):
        if self.shuffle:
            self.epoch, self.skip = self.epoch + 1, 0
            self._order = self._epoch_order()
