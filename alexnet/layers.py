"""Preprocessing and normalization layers that Keras does not ship.

They are written with `keras.ops` only, so they run on every backend and inside
the compiled model on the accelerator; they are registered so that a saved
`.keras` model loads with `import alexnet.layers`.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="alexnet")
class PerImageStandardization(keras.layers.Layer):
    """Scales each image to zero mean and unit variance.

    The same math as `tf.image.per_image_standardization`:
    `(x - mean) / max(stddev, 1 / sqrt(N))`, with the mean and standard deviation
    taken over all pixels and channels of one image and N its number of elements.
    Keras has no such layer (`Normalization` uses dataset-wide statistics), hence
    this one. Accepts any numeric input (uint8 included) and returns floats.
    """

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)  # (B, H, W, C)
        axes = tuple(range(1, len(x.shape)))
        num_elements = 1
        for dim in x.shape[1:]:
            num_elements *= dim
        mean = ops.mean(x, axis=axes, keepdims=True)
        # Variance in float32 at least: float16 overflows on squared pixel values.
        stats_dtype = "float32" if self.compute_dtype in ("float16", "bfloat16") else self.compute_dtype
        centered = ops.cast(x, stats_dtype) - ops.cast(mean, stats_dtype)
        std = ops.sqrt(ops.mean(ops.square(centered), axis=axes, keepdims=True))
        floor = 1.0 / float(num_elements) ** 0.5
        return ops.cast(centered / ops.maximum(std, floor), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="alexnet")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (Krizhevsky et al., 2012, section 3.3).

    `b_c = a_c / (k + alpha * sum(a_j ** 2 for j within depth_radius of c)) ** beta`,
    the same formula as `tf.nn.local_response_normalization` with
    `depth_radius = (n - 1) / 2` and `bias = k`. Keras 3 has no LRN layer, and
    the TensorFlow op would tie the model to one backend, hence this one.

    Args:
        n: Number of adjacent channels summed over (odd).
        k: Additive bias.
        alpha: Scale of the sum of squares.
        beta: Exponent.
    """

    def __init__(self, n=5, k=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if n < 1 or n % 2 == 0:
            raise ValueError(f"`n` must be a positive odd number. Received: n={n}")
        self.n, self.k, self.alpha, self.beta = n, k, alpha, beta

    def call(self, inputs):
        radius = self.n // 2
        squared = ops.square(inputs)  # (B, H, W, C)
        channels = inputs.shape[-1]
        padded = ops.pad(squared, [[0, 0]] * (len(inputs.shape) - 1) + [[radius, radius]])
        window_sum = padded[..., 0:channels]
        for offset in range(1, self.n):
            window_sum = window_sum + padded[..., offset : offset + channels]
        return inputs / ops.power(self.k + self.alpha * window_sum, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "n": self.n, "k": self.k, "alpha": self.alpha, "beta": self.beta}
