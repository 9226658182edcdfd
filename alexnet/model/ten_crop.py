"""The paper's 10-crop test as layers: four corner crops and the centre crop of each image and their mirrors,
and the mean of the model's probabilities over them (`results.inference.ten_crop_model` builds the wrapper)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="alexnet")
class TenCrop(keras.layers.Layer):
    """The paper's 10-crop test (Krizhevsky et al. 2012, section 4.1): four corners and the centre, and mirrors.

    (B, H, W, C) uint8 -> (B * 10, out_h, out_w, C) uint8, image-major: rows
    10b..10b+9 are image b's crops of `crop` (height, width) at the top-left,
    top-right, bottom-left, bottom-right corners and the centre, then the same
    five mirrored. Crops are resized to `out` where it differs from `crop`
    (rounded back to uint8, as the input pipeline gives images).

    Args:
        crop: (height, width) of each crop.
        out: (height, width) the crops are resized to (the model's input).
    """

    def __init__(self, crop, out=None, **kwargs):
        super().__init__(**kwargs)
        self.crop = tuple(int(v) for v in crop)
        self.out = tuple(int(v) for v in out) if out is not None else self.crop

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        h, w = self.crop
        tops = (0, 0, height - h, height - h, (height - h) // 2)
        lefts = (0, width - w, 0, width - w, (width - w) // 2)
        crops = [inputs[:, t:t + h, s:s + w, :] for t, s in zip(tops, lefts)]
        crops += [ops.flip(c, axis=2) for c in crops]
        x = ops.reshape(ops.stack(crops, axis=1), (-1, h, w, inputs.shape[-1]))  # (B * 10, h, w, C)
        if self.out != self.crop:
            x = ops.image.resize(ops.cast(x, "float32"), self.out, interpolation="bilinear", antialias=True)
            x = ops.cast(ops.clip(ops.round(x), 0, 255), inputs.dtype)
        return x

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] * 10
        return (batch, *self.out, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "crop": list(self.crop), "out": list(self.out)}


@keras.saving.register_keras_serializable(package="alexnet")
class MeanOverCrops(keras.layers.Layer):
    """(B * crops, classes) -> (B, classes): the mean of each image's consecutive `crops` rows."""

    def __init__(self, crops=10, **kwargs):
        super().__init__(**kwargs)
        self.crops = int(crops)

    def call(self, inputs):
        return ops.mean(ops.reshape(inputs, (-1, self.crops, inputs.shape[-1])), axis=1)

    def compute_output_shape(self, input_shape):
        return (None if input_shape[0] is None else input_shape[0] // self.crops, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "crops": self.crops}
