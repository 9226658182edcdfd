import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet.layers import LocalResponseNormalization, PerImageStandardization


@pytest.mark.parametrize("shape", [(4, 32, 32, 3), (2, 7, 5, 1)])
def test_standardization_matches_tensorflow(shape):
    images = np.random.default_rng(1).integers(0, 256, size=shape).astype(np.uint8)
    ours = np.asarray(PerImageStandardization()(images))
    theirs = tf.image.per_image_standardization(images).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_standardization_of_a_constant_image_is_zero_not_nan():
    images = np.full((1, 8, 8, 3), 200, dtype=np.uint8)
    ours = np.asarray(PerImageStandardization()(images))
    np.testing.assert_allclose(ours, tf.image.per_image_standardization(images).numpy())
    assert np.all(ours == 0)


@pytest.mark.parametrize("channels", [3, 96])
def test_lrn_matches_tensorflow(channels):
    x = np.random.default_rng(2).normal(size=(2, 5, 5, channels)).astype(np.float32) * 30
    ours = np.asarray(LocalResponseNormalization(n=5, k=2.0, alpha=1e-4, beta=0.75)(x))
    theirs = tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_lrn_refuses_even_window():
    with pytest.raises(ValueError, match="Received: n=4"):
        LocalResponseNormalization(n=4)


def test_layers_survive_save_and_load(tmp_path):
    inputs = keras.Input((6, 6, 4), dtype="uint8")
    outputs = LocalResponseNormalization(n=3, alpha=0.5, name="lrn")(PerImageStandardization(name="std")(inputs))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("lrn").n == 3 and loaded.get_layer("lrn").alpha == 0.5
    x = np.random.default_rng(3).integers(0, 256, size=(2, 6, 6, 4), dtype=np.uint8)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)


def test_resize_equals_keras_resizing():
    import keras

    from alexnet.layers import Resize

    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    ours = np.asarray(Resize(67, 67)(images))
    theirs = np.asarray(keras.layers.Resizing(67, 67, interpolation="bilinear")(images))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert Resize.from_config(Resize(67, 99).get_config()).compute_output_shape((None, 32, 32, 3)) == (None, 67, 99, 3)


def test_augment_acts_in_training_only_and_round_trips():
    from alexnet.layers import Augment

    images = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype("float32")
    layer = Augment(1 / 8, True, seed=3)
    np.testing.assert_array_equal(np.asarray(layer(images)), images)
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    assert not np.array_equal(np.asarray(layer(images, training=True)), images)
    again = Augment.from_config(layer.get_config())
    assert (again.shift, again.flip, again.seed) == (0.125, True, 3)
