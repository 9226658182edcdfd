"""AlexNet builders: pure functions that return functional `keras.Model`s.

The model takes raw uint8 images at their stored size (32x32x3 for CIFAR-10)
and does the per-pixel work itself, on the device:

    uint8 (B, 32, 32, 3) -> standardize -> [augment] -> resize (B, 227, 227, 3) -> AlexNet -> (B, classes)

so the input pipeline only moves small uint8 arrays and a saved model takes
the same raw images as training did.
"""

import keras
from keras import layers

from alexnet.errors import UsageError
from alexnet.model.architecture import CONVS, POOL, VARIANTS, feature_map_size, min_image_size
from alexnet.model.layers import LocalResponseNormalization, PerImageStandardization, Resize


def _check_args(input_shape, num_classes, image_size):
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise UsageError(f"`input_shape` must be (height, width, channels). Received: input_shape={input_shape}")
    if int(num_classes) < 2:
        raise UsageError(f"`num_classes` must be at least 2. Received: num_classes={num_classes}")
    if feature_map_size(image_size) < 1:
        raise UsageError(
            f"`image_size` is too small for AlexNet: the smallest that works is {min_image_size()}. "
            f"Received: image_size={image_size}"
        )


def _conv_block(x, index, conv, normalization):
    """conv -> ReLU -> normalization -> optional 3x3/2 max pooling (an `architecture.Conv`), layers named by index."""
    x = layers.Conv2D(
        conv.filters, conv.kernel, strides=conv.stride, padding="valid" if index == 1 else "same",
        activation="relu", name=f"conv{index}",
    )(x)
    if normalization == "lrn":
        # float32 whatever the policy: squared activations overflow float16 above about 256.
        x = LocalResponseNormalization(n=5, k=2.0, alpha=1e-4, beta=0.75, name=f"lrn{index}", dtype="float32")(x)
    else:
        x = layers.BatchNormalization(name=f"bn{index}")(x)
    if conv.pool:
        x = layers.MaxPooling2D(pool_size=POOL[0], strides=POOL[1], name=f"pool{index}")(x)
    return x


def _build(name, input_shape, num_classes, image_size, early_normalization, augmentation):
    input_shape = tuple(int(d) for d in input_shape)
    _check_args(input_shape, num_classes, image_size)
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="images")
    # Preprocessing computes in float32 whatever the global dtype policy: bfloat16 elementwise math is slow
    # on CPUs and coarse for pixel statistics; conv1 casts its input to the compute dtype.
    x = PerImageStandardization(name="standardize", dtype="float32")(inputs)
    if augmentation is not None:  # after standardizing, so that padding with zeros pads with the image mean
        x = augmentation(x)
    x = Resize(image_size, image_size, interpolation="bilinear", name="resize", dtype="float32")(x)
    for index, conv in enumerate(CONVS, start=1):  # (B, 55, 55, 96), (B, 27, 27, 256), ..., (B, 6, 6, 256) at 227
        x = _conv_block(x, index, conv, early_normalization if index <= 2 else "batch")
    x = layers.Flatten(name="flatten")(x)  # (B, 9216) at 227
    x = layers.Dense(4096, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.5, name="drop1")(x)
    x = layers.Dense(4096, activation="relu", name="fc2")(x)
    x = layers.Dropout(0.5, name="drop2")(x)
    # Softmax in float32 even under mixed precision, for a stable loss.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def alexnet(input_shape=(32, 32, 3), num_classes=10, image_size=227, augmentation=None):
    """The tutorial's AlexNet, with batch normalization after every convolution.

    58,327,818 parameters for 10 classes at any `image_size` whose last feature
    map is 6x6 (227 included).

    Args:
        input_shape: Shape of one stored uint8 image, (height, width, channels).
        num_classes: Number of classes of the softmax output.
        image_size: Side of the square images that the convolutions see; the
            model resizes its input to it.
        augmentation: Optional layer applied to the standardized images before
            the resize (active in training only).

    Returns:
        A `keras.Model` that maps uint8 images to class probabilities.

    Raises:
        UsageError: (a ValueError) If an argument is out of range, such as an
            `image_size` too small for the network.
    """
    return build_model("alexnet", input_shape=input_shape, num_classes=num_classes, image_size=image_size,
                       augmentation=augmentation)


def alexnet_lrn(input_shape=(32, 32, 3), num_classes=10, image_size=227, augmentation=None):
    """AlexNet with the paper's local response normalization after conv1 and conv2.

    LRN (k=2, n=5, alpha=1e-4, beta=0.75) takes the place of batch normalization
    after the first two convolutions; convolutions 3 to 5 keep theirs. Same
    arguments as `alexnet`; 58,326,410 parameters at 227 (LRN has no weights).

    Returns:
        A `keras.Model` named "alexnet_lrn" that maps uint8 images to class probabilities.

    Raises:
        UsageError: (a ValueError) If an argument is out of range.
    """
    return build_model("alexnet-lrn", input_shape=input_shape, num_classes=num_classes, image_size=image_size,
                       augmentation=augmentation)


def build_model(name, input_shape=(32, 32, 3), num_classes=10, image_size=227, augmentation=None):
    """Builds a model by its CLI name, a key of `architecture.VARIANTS` ("alexnet", "alexnet-lrn").

    Args:
        name: the variant: "alexnet" (batch normalization) or "alexnet-lrn" (the paper's LRN).
        input_shape, num_classes, image_size, augmentation: as for `alexnet`.

    Returns:
        A `keras.Model` named like the variant ("alexnet", "alexnet_lrn").

    Raises:
        UsageError: (a ValueError) For an unknown name or an argument out of range.
    """
    if name not in VARIANTS:
        raise UsageError(f"Unknown model. Expected one of {sorted(VARIANTS)}. Received: name={name!r}")
    return _build(name.replace("-", "_"), input_shape, num_classes, image_size, VARIANTS[name], augmentation)
