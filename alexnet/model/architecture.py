"""AlexNet's variants and geometry as data, without Keras.

The CLI and `TrainConfig.validate` read these before the Keras backend is
chosen; `alexnet.model.builders` builds the networks from them.
"""

import dataclasses

# CLI name -> what normalizes conv1 and conv2: "batch" (the tutorial's batch normalization) or "lrn" (the
# paper's local response normalization). Convolutions 3 to 5 use batch normalization in both.
VARIANTS = {"alexnet": "batch", "alexnet-lrn": "lrn"}


@dataclasses.dataclass(frozen=True)
class Conv:
    """One convolution of the feature extractor (conv1 is `valid`, the others `same`), with ReLU."""

    filters: int
    kernel: int  # side, pixels
    stride: int
    pool: bool  # a 3x3 max pooling of stride 2 follows


# The tutorial's (and the paper's) five convolutions: the one home of their geometry.
CONVS = (Conv(96, 11, 4, pool=True), Conv(256, 5, 1, pool=True), Conv(384, 3, 1, pool=False),
         Conv(384, 3, 1, pool=False), Conv(256, 3, 1, pool=True))
POOL = (3, 2)  # max pooling: (size, stride)


def spatial_ops():
    """The spatial ops of the feature extractor, in order: (kernel, stride, padding)."""
    ops = []
    for index, conv in enumerate(CONVS, start=1):
        ops.append((conv.kernel, conv.stride, "valid" if index == 1 else "same"))
        if conv.pool:
            ops.append((*POOL, "valid"))
    return tuple(ops)


def feature_map_size(image_size):
    """Returns the side of the last feature map for a square input, or 0 if it vanishes."""
    size = image_size
    for kernel, stride, padding in spatial_ops():
        if padding == "same":
            size = -(-size // stride)
        else:
            size = (size - kernel) // stride + 1 if size >= kernel else 0
        if size <= 0:
            return 0
    return size


def min_image_size():
    """Returns the smallest square image side that AlexNet accepts (67)."""
    size = 1
    while feature_map_size(size) < 1:
        size += 1
    return size
