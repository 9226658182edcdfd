"""AlexNet's variants and geometry as data, without Keras.

The CLI and `TrainConfig.validate` read these before the Keras backend is
chosen; `alexnet.model.builders` builds the networks from them.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Conv:
    """One convolution of the feature extractor, with ReLU."""

    filters: int
    kernel: int  # side, pixels
    stride: int
    pad: int  # zeros on each side (for the stride-1 convolutions: kernel // 2, Keras's "same")
    pool: bool  # a 3x3 max pooling of stride 2 follows


@dataclasses.dataclass(frozen=True)
class Variant:
    """A network of the family: its convolutions, what normalizes them, and what its input is."""

    convs: tuple  # `Conv`s, in order
    # What follows conv1 and conv2: "batch" (batch normalization), "lrn" (the paper's local response
    # normalization) or "none"; convolutions 3 to 5 have batch normalization unless it is "none".
    normalization: str
    image_size: int  # the side of the images it was designed for (the builders' default)
    # How the model turns uint8 pixels into the network's input: "standardize" (per image, the tutorial's) or
    # "imagenet" ([0, 1], then ImageNet's channel mean and std, as torchvision's weights expect).
    pixels: str = "standardize"
    pooled: int = 0  # side of the adaptive average pooling after the last convolution (0: none)


POOL = (3, 2)  # max pooling: (size, stride)

# The tutorial's (and the paper's) five convolutions.
CONVS = (Conv(96, 11, 4, 0, pool=True), Conv(256, 5, 1, 2, pool=True), Conv(384, 3, 1, 1, pool=False),
         Conv(384, 3, 1, 1, pool=False), Conv(256, 3, 1, 1, pool=True))
# torchvision's AlexNet (models/alexnet.py: "One weird trick"): 64-192-384-256-256, padded, no normalization.
TORCHVISION_CONVS = (Conv(64, 11, 4, 2, pool=True), Conv(192, 5, 1, 2, pool=True), Conv(384, 3, 1, 1, pool=False),
                     Conv(256, 3, 1, 1, pool=False), Conv(256, 3, 1, 1, pool=True))

# CLI name -> the variant; the one home of the architectures' geometry.
VARIANTS = {
    "alexnet": Variant(CONVS, "batch", 227),
    "alexnet-lrn": Variant(CONVS, "lrn", 227),
    "alexnet-torchvision": Variant(TORCHVISION_CONVS, "none", 224, pixels="imagenet", pooled=6),
}


def spatial_ops(model="alexnet"):
    """The spatial ops of a variant's feature extractor, in order: (kernel, stride, pad)."""
    ops = []
    for conv in VARIANTS[model].convs:
        ops.append((conv.kernel, conv.stride, conv.pad))
        if conv.pool:
            ops.append((*POOL, 0))
    return tuple(ops)


def feature_map_size(image_size, model="alexnet"):
    """Returns the side of the last convolutional feature map for a square input, or 0 if it vanishes (before
    any adaptive pooling)."""
    size = image_size
    for kernel, stride, pad in spatial_ops(model):
        size = (size + 2 * pad - kernel) // stride + 1 if size + 2 * pad >= kernel else 0
        if size <= 0:
            return 0
    return size


def classifier_side(image_size, model="alexnet"):
    """The side of the feature map that the dense layers read: the adaptive pooling's, where there is one."""
    return VARIANTS[model].pooled or feature_map_size(image_size, model)


def min_image_size(model="alexnet"):
    """Returns the smallest square image side that a variant accepts (67 for ours, 63 for torchvision's)."""
    size = 1
    while feature_map_size(size, model) < 1:
        size += 1
    return size
