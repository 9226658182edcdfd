import pytest

from alexnet import data
from alexnet.errors import AlexnetError


def test_offline_keras_download_is_a_short_error(monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://example.invalid: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(AlexnetError, match="could not download CIFAR-10.*--data PATH"):
        data.load_dataset("cifar10")
