import keras
import numpy as np
import pytest

from alexnet.model import builders

PARAMETER_COUNTS = [
    # (model, image size, classes, parameters)
    ("alexnet", 227, 10, 58_327_818),  # the tutorial's code with 3x3 convs 3-5 (its printed 56,361,738 is 1x1)
    ("alexnet-lrn", 227, 10, 58_326_410),  # LRN has no weights: the BN of conv1 and conv2 (1,408) is gone
    ("alexnet", 67, 10, 21_627_658),  # the smallest input: 1x1x256 features before fc1
    ("alexnet", 227, 100, 58_696_548),
]


@pytest.mark.parametrize("name,image_size,classes,expected", PARAMETER_COUNTS)
def test_parameter_counts(name, image_size, classes, expected):
    model = builders.build_model(name, num_classes=classes, image_size=image_size)
    assert model.count_params() == expected


@pytest.mark.parametrize("name", sorted(builders.VARIANTS))
def test_takes_uint8_images_and_outputs_probabilities(name):
    model = builders.build_model(name, input_shape=(32, 32, 3), num_classes=10, image_size=67)
    assert model.input.dtype == "uint8"
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    probabilities = np.asarray(model.predict(images, verbose=0))
    assert probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_layers_are_named_like_keras_applications():
    names = [layer.name for layer in builders.alexnet(image_size=67).layers]
    assert names[:3] == ["images", "standardize", "resize"]
    assert {"conv1", "bn1", "pool1", "conv5", "pool5", "flatten", "fc1", "drop1", "fc2", "drop2"} <= set(names)
    assert names[-1] == "predictions"
    lrn_names = [layer.name for layer in builders.alexnet_lrn(image_size=67).layers]
    assert {"lrn1", "lrn2", "bn3", "bn4", "bn5"} <= set(lrn_names) and "bn1" not in lrn_names


def test_feature_map_sizes():
    assert builders.feature_map_size(227) == 6  # the paper's 6x6x256
    assert builders.feature_map_size(67) == 1
    assert builders.feature_map_size(66) == 0
    assert builders.min_image_size() == 67


def test_too_small_image_is_refused_with_the_smallest_size():
    with pytest.raises(ValueError, match=r"smallest that works is 67\. Received: image_size=66"):
        builders.alexnet(image_size=66)


@pytest.mark.parametrize("kwargs,message", [
    ({"num_classes": 1}, "num_classes"),
    ({"input_shape": (32, 32)}, "input_shape"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        builders.alexnet(image_size=67, **kwargs)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="Received: name='vgg'"):
        builders.build_model("vgg")



@pytest.mark.parametrize("name", sorted(builders.VARIANTS))
def test_calling_the_model_equals_predict(name):
    """`model(x)` without `training` is inference: Keras's Resizing and random layers once made the
    BatchNormalization after them use batch statistics there (and so in exported models)."""
    from alexnet.model.compiling import augmentation

    model = builders.build_model(name, image_size=67, augmentation=augmentation("cpu", seed=0))
    images = np.random.default_rng(1).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(images, np.arange(8) % 10, epochs=1, verbose=0)  # moving statistics away from their start
    expected = np.asarray(model.predict(images, verbose=0))
    as_numpy = keras.ops.convert_to_numpy  # a torch tensor that tracks gradients refuses np.asarray
    np.testing.assert_allclose(as_numpy(model(images)), expected, atol=1e-5)
    np.testing.assert_allclose(as_numpy(model(images, training=False)), expected, atol=1e-5)
