import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet.model.layers import Augment, LocalResponseNormalization, PerImageStandardization
from alexnet.training.checkpoints import seed_states


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


def _moves(images, shifted, most):
    """The (dy, dx) of each shifted image (down and right positive): the only whole-pixel move of at most `most`
    (dy, dx) that gives it from its input, with zeros where the input left; fails where none or several do."""
    (most_dy, most_dx), (height, width) = most, images.shape[1:3]
    moves = []
    for image, out in zip(images, shifted):
        padded = np.pad(image, ((most_dy, most_dy), (most_dx, most_dx), (0, 0)))
        found = [(dy, dx) for dy in range(-most_dy, most_dy + 1) for dx in range(-most_dx, most_dx + 1)
                 if np.array_equal(out, padded[most_dy - dy:most_dy - dy + height, most_dx - dx:most_dx - dx + width])]
        assert len(found) == 1, found
        moves.append(found[0])
    return np.array(moves)


@pytest.mark.parametrize("shape, shift, most", [
    ((64, 32, 32, 3), 1 / 8, (4, 4)),  # the fast and cpu recipes' 4 px
    ((64, 9, 13, 2), 0.25, (2, 3)),  # round(2.25), round(3.25): each side its own
])
def test_augment_shifts_each_image_by_its_own_whole_pixels_filling_zeros(shape, shift, most):
    images = np.random.default_rng(8).normal(size=shape).astype("float32")  # distinct images, no zero pixel
    layer = Augment(shift, seed=4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images)), images)  # outside training: unchanged
    moves = _moves(images, keras.ops.convert_to_numpy(layer(images, training=True)), most)
    for axis, largest in enumerate(most):
        assert len(set(moves[:, axis])) > largest, moves  # not one shift for all: over half of the 2m+1 seen


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow", reason="runs the others")
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_shifts_are_whole_pixel_moves_on_the_other_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                           "-k", "shifts_each_image"], capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": backend}, cwd=Path(__file__).parent, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


@pytest.fixture
def no_op_determinism():
    """TensorFlow's op determinism off during the test (Keras compiles nothing with XLA while it is on; training
    runs turn it on), and as it was after."""
    from tensorflow.python.framework import config as tf_config  # `disable` is not public

    was = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    yield
    if was:
        tf_config.enable_op_determinism()


BASIS = {"eigenvalues": [0.5, 0.2, 0.01], "eigenvectors": np.eye(3).tolist()}


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="XLA on TensorFlow")
@pytest.mark.parametrize("shift, flip, lighting", [(1 / 8, True, 0.0), (1 / 8, False, 0.0), (1 / 8, True, 0.1)])
def test_augment_compiles_with_xla_on_tensorflow(no_op_determinism, shift, flip, lighting):
    """The shifts were RandomTranslation's, whose TensorFlow image transform has no XLA kernel: Keras then
    compiled the fast and cpu recipes' models without XLA, and said so only in a warning."""
    model = keras.Sequential([keras.Input((32, 32, 3)), Augment(shift, flip, seed=1, lighting=lighting, **BASIS),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    assert model.jit_compile is True
    images = np.random.default_rng(9).normal(size=(8, 32, 32, 3)).astype("float32")
    history = model.fit(images, np.zeros((8, 2), "float32"), batch_size=8, epochs=1, verbose=0)
    assert model.jit_compile is True and np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("settings, states", [
    ({"shift": 1 / 8, "flip": True}, ["shift", "flip"]),
    ({"shift": 1 / 8, "flip": True, "lighting": 0.1}, ["lighting", "shift", "flip"]),
    ({"shift": 1 / 8, "lighting": 0.1}, ["lighting", "shift"]),
    ({"flip": True}, ["flip"]),
])
def test_augment_keeps_the_random_generator_states_of_its_checkpoints(settings, states):
    """A checkpoint keeps the random-generator states by order (`checkpoints.seed_states`): those of the layer that
    shifted with a RandomTranslation sublayer (its own lighting generator first, then its sublayers') still fit."""
    layer = Augment(seed=1, **settings, **BASIS)
    model = keras.Sequential([keras.Input((32, 32, 3)), layer])
    owners = {"lighting": layer.lighting_seed, "shift": layer.shift_seed,
              "flip": layer.mirror.generator if layer.mirror is not None else None}
    assert [id(v) for v in seed_states(model)] == [id(owners[name].state) for name in states]


def test_augment_loads_the_config_of_its_randomtranslation_version():
    """A model saved when the shifts were a RandomTranslation sublayer loads (its config, as saved then)."""
    config = {"name": "augment", "trainable": True,
              "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                        "registered_name": None},
              "shift": 0.125, "flip": True, "seed": 3, "lighting": 0.1, **BASIS}
    layer = keras.saving.deserialize_keras_object({"module": "alexnet.model.layers", "class_name": "Augment",
                                                   "config": config, "registered_name": "alexnet>Augment"})
    assert isinstance(layer, Augment) and layer.get_config() == config
    images = np.random.default_rng(10).normal(size=(4, 32, 32, 3)).astype("float32")
    assert keras.ops.convert_to_numpy(layer(images, training=True)).shape == images.shape


def test_ten_crop_takes_the_four_corners_the_centre_and_their_mirrors():
    from alexnet.model.ten_crop import TenCrop

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
    from alexnet.model.ten_crop import MeanOverCrops

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
