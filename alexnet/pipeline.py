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


def _tf_dataset(images, labels, batch_size, shuffle, seed, num_classes):
    import tensorflow as tf

    images = tf.constant(images)
    labels = tf.constant(labels, dtype=tf.int64)
    order = tf.data.Dataset.range(len(labels))
    if shuffle:
        order = order.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)

    def gather(index):
        batch_labels = tf.gather(labels, index)
        if num_classes:
            batch_labels = tf.one_hot(batch_labels, num_classes)
        return tf.gather(images, index), batch_labels

    batches = order.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)


class ArrayBatches(keras.utils.PyDataset):
    """Seeded, reshuffled-every-epoch batches of in-memory arrays, for the JAX and PyTorch backends."""

    def __init__(self, images, labels, batch_size, shuffle=False, seed=None, num_classes=None, shard=(0, 1),
                 replicas=1):
        super().__init__(workers=1, use_multiprocessing=False)
        self.shard, self.replicas = shard, replicas
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.batch_size, self.shuffle, self.num_classes = batch_size, shuffle, num_classes
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(self.labels)) if shuffle else np.arange(len(self.labels))

    def __len__(self):
        full, rest = divmod(len(self.labels), self.batch_size)
        if self.shuffle and self.replicas > 1 and rest < self.replicas:  # nothing left once cut to a multiple
            return max(1, full)
        return full + (rest > 0)

    def __getitem__(self, index):
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
            self._order = self._rng.permutation(len(self.labels))
