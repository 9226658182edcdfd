"""The tf.data input pipeline: uint8 images in, uint8 batches out.

TensorFlow-only code lives here. The pipeline moves small uint8 images; the
standardization and resize to 227x227 happen inside the model, on the device.
The tutorial shuffled preprocessed 227x227 float images (about 28 GB for
45,000 of them); here the shuffle buffer holds image *indices* over the whole
split (a perfect shuffle, 8 bytes an image) and each batch is one gather.
"""


def make_dataset(images, labels, batch_size, shuffle=False, seed=None):
    """Returns a `tf.data.Dataset` of (uint8 images (B, H, W, C), int64 labels (B,)) batches.

    Args:
        images: uint8 array (N, H, W, C), kept in memory once.
        labels: int array (N,).
        batch_size: images per batch; the last batch may be smaller.
        shuffle: reshuffle the whole split every epoch before batching.
        seed: seed of the shuffle order.
    """
    import tensorflow as tf

    images = tf.constant(images)
    labels = tf.constant(labels, dtype=tf.int64)
    order = tf.data.Dataset.range(len(labels))
    if shuffle:
        order = order.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    batches = order.batch(batch_size).map(
        lambda index: (tf.gather(images, index), tf.gather(labels, index)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    return batches.prefetch(tf.data.AUTOTUNE)
