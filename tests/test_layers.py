import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet.model.layers import LocalResponseNormalization, PerImageStandardization


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

    from alexnet.model.layers import Resize

    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    ours = np.asarray(Resize(67, 67)(images))
    theirs = np.asarray(keras.layers.Resizing(67, 67, interpolation="bilinear")(images))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert Resize.from_config(Resize(67, 99).get_config()).compute_output_shape((None, 32, 32, 3)) == (None, 67, 99, 3)


def test_augment_acts_in_training_only_and_round_trips():
    from alexnet.model.layers import Augment

    images = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype("float32")
    layer = Augment(1 / 8, True, seed=3)
    np.testing.assert_array_equal(np.asarray(layer(images)), images)
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    assert not np.array_equal(np.asarray(layer(images, training=True)), images)
    again = Augment.from_config(layer.get_config())
    assert (again.shift, again.flip, again.seed) == (0.125, True, 3)


def test_ten_crop_takes_the_four_corners_the_centre_and_their_mirrors():
    from alexnet.model.layers import TenCrop

    images = np.random.default_rng(4).integers(0, 256, size=(2, 9, 11, 3), dtype=np.uint8)
    crops = np.asarray(TenCrop((5, 6))(images))
    assert crops.shape == (20, 5, 6, 3) and crops.dtype == np.uint8
    for b, image in enumerate(images):
        by_hand = [image[:5, :6], image[:5, 5:], image[4:, :6], image[4:, 5:], image[2:7, 2:8]]
        by_hand += [crop[:, ::-1] for crop in by_hand]
        np.testing.assert_array_equal(crops[10 * b:10 * b + 10], np.stack(by_hand))
    resized = TenCrop((5, 6), out=(8, 8))
    assert np.asarray(resized(images)).shape == (20, 8, 8, 3)
    assert TenCrop.from_config(resized.get_config()).out == (8, 8)


def test_mean_over_crops_averages_each_images_rows():
    from alexnet.model.layers import MeanOverCrops

    x = np.arange(2 * 10 * 3, dtype="float32").reshape(20, 3)
    np.testing.assert_allclose(np.asarray(MeanOverCrops(10)(x)), x.reshape(2, 10, 3).mean(axis=1))


def test_colour_basis_is_the_eigendecomposition_of_the_standardized_pixels_covariance():
    from alexnet.model.layers import colour_basis

    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    values, vectors = (np.asarray(v) for v in colour_basis(images))
    standardized = np.asarray(PerImageStandardization()(images), np.float64).reshape(-1, 3)
    covariance = np.cov(standardized, rowvar=False)
    np.testing.assert_allclose(covariance @ vectors, vectors * values, atol=1e-5)  # A v = lambda v
    assert list(values) == sorted(values, reverse=True)


def test_pca_lighting_adds_one_colour_offset_per_image_in_training_only():
    from alexnet.model.layers import Augment

    values, vectors = [0.5, 0.2, 0.01], np.linalg.qr(np.random.default_rng(6).normal(size=(3, 3)))[0].tolist()
    layer = Augment(lighting=0.1, eigenvalues=values, eigenvectors=vectors, seed=2)
    images = np.random.default_rng(7).normal(size=(64, 5, 5, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(images)), images)
    offset = np.asarray(layer(images, training=True)) - images
    np.testing.assert_allclose(offset, np.broadcast_to(offset[:, :1, :1], offset.shape), atol=1e-6)  # per image
    alpha = offset[:, 0, 0] @ np.asarray(vectors) / np.asarray(values)  # back to each component's weight
    assert 0.05 < alpha.std() < 0.15  # alpha ~ N(0, 0.1)
    again = Augment.from_config(layer.get_config())
    assert (again.lighting, again.eigenvalues) == (0.1, values)
    with pytest.raises(ValueError, match="lighting noise needs the eigenvalues"):
        Augment(lighting=0.1)
