"""The tutorial's code, transcribed as the baseline ("Implementing AlexNet CNN architecture
using TensorFlow 2.0+ and Keras").

Kept as close to the original as Keras 3 allows; the changes are marked:
- `SGD(lr=0.001)` -> `SGD(learning_rate=0.001)` (`lr` no longer exists);
- `input_shape=` on the first layer -> a `keras.Input` (Keras 3's way);
- the shuffle buffer is a parameter, because the original's (every training
  image, preprocessed: about 28 GB) does not fit this machine; the benchmark
  measures it on a fraction and extrapolates.
"""

import tensorflow as tf
from tensorflow import keras


def process_images(image, label):
    # Normalize images to have a mean of 0 and standard deviation of 1
    image = tf.image.per_image_standardization(image)
    # Resize images from 32x32 to 277x277
    image = tf.image.resize(image, (227, 227))
    return image, label


def train_pipeline(images, labels, shuffle_buffer=None):
    """train_ds as in the tutorial: map(process_images) -> shuffle(whole split) -> batch(32, drop_remainder)."""
    train_ds = tf.data.Dataset.from_tensor_slices((images, labels))
    train_ds_size = tf.data.experimental.cardinality(train_ds).numpy()
    buffer_size = train_ds_size if shuffle_buffer is None else shuffle_buffer  # changed: see the docstring
    return (train_ds
            .map(process_images)
            .shuffle(buffer_size=buffer_size)
            .batch(batch_size=32, drop_remainder=True))


def model():
    """The tutorial's Sequential AlexNet (3x3 kernels for convs 3-5, as its code has them)."""
    m = keras.models.Sequential([
        keras.Input(shape=(227, 227, 3)),  # changed: was input_shape=(227,227,3) on the first layer
        keras.layers.Conv2D(filters=96, kernel_size=(11, 11), strides=(4, 4), activation='relu'),
        keras.layers.BatchNormalization(),
        keras.layers.MaxPool2D(pool_size=(3, 3), strides=(2, 2)),
        keras.layers.Conv2D(filters=256, kernel_size=(5, 5), strides=(1, 1), activation='relu', padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.MaxPool2D(pool_size=(3, 3), strides=(2, 2)),
        keras.layers.Conv2D(filters=384, kernel_size=(3, 3), strides=(1, 1), activation='relu', padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.Conv2D(filters=384, kernel_size=(3, 3), strides=(1, 1), activation='relu', padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.Conv2D(filters=256, kernel_size=(3, 3), strides=(1, 1), activation='relu', padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.MaxPool2D(pool_size=(3, 3), strides=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(4096, activation='relu'),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(4096, activation='relu'),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation='softmax')
    ])
    m.compile(loss='sparse_categorical_crossentropy',
              optimizer=keras.optimizers.SGD(learning_rate=0.001),  # changed: was lr=0.001
              metrics=['accuracy'])
    return m
