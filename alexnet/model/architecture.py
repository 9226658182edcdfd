"""AlexNet's variants and geometry as data, without Keras.

The CLI and `TrainConfig.validate` read these before the Keras backend is
chosen; `alexnet.model.builders` builds the networks from them.
"""

# CLI name -> what normalizes conv1 and conv2: "batch" (the tutorial's batch normalization) or "lrn" (the
# paper's local response normalization). Convolutions 3 to 5 use batch normalization in both.
VARIANTS = {"alexnet": "batch", "alexnet-lrn": "lrn"}

# The spatial ops of the feature extractor, in order: (kernel, stride, padding).
# Used to compute the smallest input that the network accepts.
SPATIAL_OPS = (
    (11, 4, "valid"),  # conv1
    (3, 2, "valid"),  # pool1
    (5, 1, "same"),  # conv2
    (3, 2, "valid"),  # pool2
    (3, 1, "same"),  # conv3
    (3, 1, "same"),  # conv4
    (3, 1, "same"),  # conv5
    (3, 2, "valid"),  # pool5
)


def feature_map_size(image_size):
    """Returns the side of the last feature map for a square input, or 0 if it vanishes."""
    size = image_size
    for kernel, stride, padding in SPATIAL_OPS:
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
