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
from alexnet.model.architecture import POOL, VARIANTS, feature_map_size, min_image_size
from alexnet.model.layers import (AdaptiveAveragePooling, ChannelNormalization, LocalResponseNormalization,
                                  ModelCard, PerImageStandardization, Resize)


def _check_args(name, input_shape, num_classes, image_size):
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise UsageError(f"`input_shape` must be (height, width, channels). Received: input_shape={input_shape}")
    if int(num_classes) < 2:
        raise UsageError(f"`num_classes` must be at least 2. Received: num_classes={num_classes}")
    if feature_map_size(image_size, name) < 1:
        raise UsageError(
            f"`image_size` is too small for {name}: the smallest that works is {min_image_size(name)}. "
            f"Received: image_size={image_size}"
        )


def _conv_block(x, index, conv, normalization):
    """[zero padding] -> conv -> ReLU -> [normalization] -> [3x3/2 max pooling] (an `architecture.Conv`), layers
    named by index. Ours keeps Keras's "same" padding (the same zeros at stride 1), so that its saved models load."""
    if normalization == "none" and conv.pad:  # torchvision's explicit padding: Keras's "same" pads differently
        x = layers.ZeroPadding2D(conv.pad, name=f"pad{index}")(x)
    padding = "same" if conv.pad and normalization != "none" else "valid"
    x = layers.Conv2D(conv.filters, conv.kernel, strides=conv.stride, padding=padding, activation="relu",
                      name=f"conv{index}")(x)
    if normalization == "lrn":
        # float32 whatever the policy: squared activations overflow float16 above about 256.
        x = LocalResponseNormalization(n=5, k=2.0, alpha=1e-4, beta=0.75, name=f"lrn{index}", dtype="float32")(x)
    elif normalization == "batch":
        x = layers.BatchNormalization(name=f"bn{index}")(x)
    if conv.pool:
        x = layers.MaxPooling2D(pool_size=POOL[0], strides=POOL[1], name=f"pool{index}")(x)
    return x


def _pixels(variant, inputs):
    """uint8 pixels -> the network's float input (float32 whatever the global policy: bfloat16 elementwise math is
    slow on CPUs and coarse for pixel statistics; conv1 casts its input to the compute dtype)."""
    if variant.pixels == "imagenet":
        return ChannelNormalization(name="normalize", dtype="float32")(inputs)
    return PerImageStandardization(name="standardize", dtype="float32")(inputs)


def _classifier(x, num_classes, dropout_first):
    """flatten -> dense 4096 -> dense 4096 -> softmax, with dropout 0.5 before (torchvision) or after (ours) each
    hidden dense layer."""
    x = layers.Flatten(name="flatten")(x)  # (B, 9216) at 227 (ours) or any size (torchvision's, pooled to 6x6)
    for index in (1, 2):
        if dropout_first:
            x = layers.Dropout(0.5, name=f"drop{index}")(x)
        x = layers.Dense(4096, activation="relu", name=f"fc{index}")(x)
        if not dropout_first:
            x = layers.Dropout(0.5, name=f"drop{index}")(x)
    # Softmax in float32 even under mixed precision, for a stable loss.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def _build(name, input_shape, num_classes, image_size, augmentation, card):
    variant = VARIANTS[name]
    image_size = variant.image_size if image_size is None else int(image_size)
    input_shape = tuple(int(d) for d in input_shape)
    _check_args(name, input_shape, num_classes, image_size)
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="images")
    x = _pixels(variant, inputs)
    if augmentation is not None:  # after normalizing, so that padding with zeros pads with the mean
        x = augmentation(x)
    x = Resize(image_size, image_size, interpolation="bilinear", name="resize", dtype="float32")(x)
    for index, conv in enumerate(variant.convs, start=1):  # (B, 55, 55, 96), ..., (B, 6, 6, 256) at 227 (ours)
        x = _conv_block(x, index, conv, variant.normalization if index <= 2 or variant.normalization == "none"
                        else "batch")
    if variant.pooled:
        x = AdaptiveAveragePooling(variant.pooled, name="avgpool")(x)
    outputs = _classifier(x, num_classes, dropout_first=variant.pooled > 0)
    if card is not None:
        outputs = ModelCard(**card, name="model_card", dtype="float32")(outputs)
    return keras.Model(inputs, outputs, name=name.replace("-", "_"))


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


def alexnet_torchvision(input_shape=(224, 224, 3), num_classes=1000, image_size=224, augmentation=None):
    """torchvision's AlexNet ("One weird trick"), layer for layer, so that its ImageNet weights load.

    conv 64@11x11/4 pad 2, maxpool 3/2, conv 192@5x5 pad 2, maxpool, conv 384, 256, 256 @3x3 pad 1, maxpool,
    adaptive average pooling to 6x6, then dropout, dense 4096, dropout, dense 4096, dense `num_classes`; ReLU
    after every convolution and hidden dense layer, no normalization layers. The model scales its uint8 input to
    [0, 1] and normalizes it with ImageNet's channel mean and std, as torchvision's transforms do.
    61,100,840 parameters at 1000 classes, at any `image_size` from 63 (the adaptive pooling). Same arguments as
    `alexnet`; `alexnet import-weights` fills it with a torchvision state dict.

    Returns:
        A `keras.Model` named "alexnet_torchvision" that maps uint8 images to class probabilities.

    Raises:
        UsageError: (a ValueError) If an argument is out of range, such as an `image_size` below 63.
    """
    return build_model("alexnet-torchvision", input_shape=input_shape, num_classes=num_classes,
                       image_size=image_size, augmentation=augmentation)


def build_model(name, input_shape=(32, 32, 3), num_classes=10, image_size=None, augmentation=None, card=None):
    """Builds a model by its CLI name, a key of `architecture.VARIANTS`.

    Args:
        name: "alexnet" (batch normalization), "alexnet-lrn" (the paper's LRN) or "alexnet-torchvision".
        input_shape, num_classes, augmentation: as for `alexnet`.
        image_size: as for `alexnet`; None: the variant's own (227, or 224 for torchvision's).
        card: optional {"class_names": [...], "crop": "resize" | "center"}: a `layers.ModelCard` after the
            output, so that the saved model names its classes and says how image files become its input.

    Returns:
        A `keras.Model` named like the variant ("alexnet", "alexnet_lrn", "alexnet_torchvision").

    Raises:
        UsageError: (a ValueError) For an unknown name or an argument out of range.
    """
    if name not in VARIANTS:
        raise UsageError(f"Unknown model. Expected one of {sorted(VARIANTS)}. Received: name={name!r}")
    return _build(name, input_shape, num_classes, image_size, augmentation, card)
