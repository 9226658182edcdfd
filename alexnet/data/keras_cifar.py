"""CIFAR-10 through `keras.datasets` (downloaded once, cached by Keras)."""

import numpy as np

from alexnet.data.cifar_batches import CIFAR10_CLASSES
from alexnet.data.dataset import Dataset
from alexnet.errors import AlexnetError


def load_keras_cifar10():
    """Loads CIFAR-10 with `keras.datasets.cifar10.load_data()` (downloaded once, cached by Keras)."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:  # Keras raises bare Exceptions for network failures
        raise AlexnetError(
            "could not download CIFAR-10 with keras.datasets.cifar10.load_data() "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}). "
            "Offline? Use --data PATH with an image folder (train/<class>/*, test/<class>/*), "
            "a cifar-10-batches-py folder, or a .tar.gz of either."
        ) from error
    return Dataset(x_train, y_train.reshape(-1).astype(np.int64), x_test, y_test.reshape(-1).astype(np.int64),
                   list(CIFAR10_CLASSES), source="keras.datasets.cifar10")
