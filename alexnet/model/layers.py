"""Preprocessing and normalization layers that Keras does not ship.

They are written with `keras.ops` only, so they run on every backend and inside
the compiled model on the accelerator; they are registered so that a saved
`.keras` model loads with `import alexnet.model.layers`.
"""

import keras
import numpy as np
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
class ChannelNormalization(keras.layers.Layer):
    """Scales uint8 pixels to [0, 1], then normalizes each channel with a fixed mean and std.

    torchvision's `ToTensor` then `Normalize(mean, std)`: what its ImageNet weights
    expect, with ImageNet's statistics by default. Accepts any numeric input and returns floats.
    """

    def __init__(self, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype) / 255.0
        return (x - ops.convert_to_tensor(self.mean, self.compute_dtype)) / ops.convert_to_tensor(self.std,
                                                                                                   self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def _bins(size, out):
    """torch's adaptive-pooling matrix (out, size): row i averages inputs floor(i*size/out) to ceil((i+1)*size/out)."""
    matrix = np.zeros((out, size), np.float32)
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


@keras.saving.register_keras_serializable(package="alexnet")
class AdaptiveAveragePooling(keras.layers.Layer):
    """Average pooling of (B, H, W, C) to (B, size, size, C) with torch's `AdaptiveAvgPool2d` bins.

    Keras's `AdaptiveAveragePooling2D` refuses a map smaller than its output (torchvision's AlexNet at
    67 px has a 1x1 map, which torch repeats); this one is two small matrix products, exact where the map
    already has the output's size (224 px), and compiles with XLA.
    """

    def __init__(self, size=6, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, inputs):
        rows = ops.convert_to_tensor(_bins(inputs.shape[1], self.size), inputs.dtype)
        columns = ops.convert_to_tensor(_bins(inputs.shape[2], self.size), inputs.dtype)
        return ops.einsum("ih,bhwc,jw->bijc", rows, inputs, columns)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="alexnet")
class ModelCard(keras.layers.Layer):
    """Passes its input through; carries what a model file needs to be used without its run folder.

    Args:
        class_names: the name of each output, in order.
        crop: how an image file becomes the model's input: "resize" (the whole image, to the input size) or
            "center" (the shorter side resized to input / 0.875, then the centre crop: torchvision's evaluation).
    """

    def __init__(self, class_names=(), crop="resize", **kwargs):
        super().__init__(**kwargs)
        self.class_names, self.crop = [str(name) for name in class_names], crop

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "class_names": self.class_names, "crop": self.crop}


def model_card(model):
    """The `ModelCard` layer of a model, or None (models from before it, or built without class names)."""
    return next((layer for layer in model.layers if isinstance(layer, ModelCard)), None)


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


# Keras's image preprocessing layers (Resizing, RandomFlip, RandomTranslation, ...) declare `training=True` as
# their call default, and Keras 3 passes a layer's default on to the layers called after it when a model is
# called without `training`: `model(images)`, and `model.export`, which traces that call. BatchNormalization
# after them then normalizes with the batch's statistics instead of its moving averages (measured on Keras
# 3.15.1: exported probabilities off by up to 0.18, top-1 agreement 60%). The two layers below do the same work
# with a `training=None` default, so the model computes the same in `model(images)`, `predict` and exports.


@keras.saving.register_keras_serializable(package="alexnet")
class Resize(keras.layers.Layer):
    """Resizes images to (height, width) with `keras.ops.image.resize`, as `keras.layers.Resizing` does.

    Args:
        height: Output height in pixels.
        width: Output width in pixels.
        interpolation: "bilinear" (the default), "nearest" or "bicubic".
    """

    def __init__(self, height, width, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.height, self.width, self.interpolation = int(height), int(width), interpolation

    def call(self, inputs):
        return ops.image.resize(inputs, (self.height, self.width), interpolation=self.interpolation)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="alexnet")
class Augment(keras.layers.Layer):
    """Random shifts, horizontal flips and PCA lighting noise of (B, H, W, C) images, in training only.

    Shifts are by whole pixels, up to `shift` of the height and width, filled with
    zeros (the mean of a standardized image); flips are left-right.
    Lighting noise is the paper's (Krizhevsky et al. 2012, section 4.1): to every
    pixel of an image, add `eigenvectors @ (alpha * eigenvalues)` with one
    `alpha ~ N(0, lighting)` per component and image, where the eigenvalues and
    eigenvectors are those of the 3x3 covariance of the training pixels
    (`colour_basis`). The images here are standardized per image, so the basis is
    taken of standardized pixels: before standardization the first component,
    close to plain brightness, would be subtracted again.
    Outside training (`model(images)`, `predict`, exports) it passes images
    through and leaves the training mode of the layers after it alone.

    Args:
        shift: Largest shift as a fraction of the side (0: no shifts).
        flip: Whether to flip half the images left-right.
        seed: Seed of the random shifts, flips and lighting.
        lighting: Standard deviation of alpha (the paper's 0.1; 0: none).
        eigenvalues: (3,) of the pixels' colour covariance, if lighting.
        eigenvectors: (3, 3), one eigenvector a column, if lighting.
    """

    def __init__(self, shift=0.0, flip=False, seed=None, lighting=0.0, eigenvalues=None, eigenvectors=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.shift, self.flip, self.seed, self.lighting = float(shift), bool(flip), seed, float(lighting)
        if self.lighting and (eigenvalues is None or eigenvectors is None):
            raise ValueError(f"lighting noise needs the eigenvalues and eigenvectors of the pixels' colour "
                             f"covariance. Received: lighting={lighting}, eigenvalues={eigenvalues}")
        self.eigenvalues = [float(v) for v in eigenvalues] if eigenvalues is not None else None
        self.eigenvectors = [[float(v) for v in row] for row in eigenvectors] if eigenvectors is not None else None
        # The random-generator states, in the order a checkpoint lists them (`checkpoints.seed_states`): the
        # layer's own generators come before those of its sublayers, so this order (lighting, shift, then
        # RandomFlip's) is the one of the models that shifted with a RandomTranslation sublayer.
        self.lighting_seed = keras.random.SeedGenerator(seed) if self.lighting else None
        self.shift_seed = keras.random.SeedGenerator(seed) if self.shift else None
        self.mirror = keras.layers.RandomFlip("horizontal", seed=seed, dtype=self.dtype_policy) if flip else None

    def build(self, input_shape):
        if self.mirror is not None:
            self.mirror.build(input_shape)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        x = inputs
        if self.shift:
            x = self._shift(x)
        if self.mirror is not None:
            x = self.mirror(x, training=True)
        if self.lighting:
            alpha = keras.random.normal((ops.shape(x)[0], 3), stddev=self.lighting, seed=self.lighting_seed)
            scaled = alpha * ops.convert_to_tensor(self.eigenvalues, dtype=alpha.dtype)  # (B, 3)
            offset = ops.matmul(scaled, ops.transpose(ops.convert_to_tensor(self.eigenvectors, dtype=alpha.dtype)))
            x = x + ops.cast(offset[:, None, None, :], x.dtype)  # (B, 1, 1, 3): the same for every pixel
        return x

    def _shift(self, images):
        """Each image of (B, H, W, C) moved by its own whole number of pixels, zeros where it left.

        RandomTranslation's draw (a uniform fraction of the side, rounded by its nearest-pixel sampling) as one
        gather from the zero-padded batch: its TensorFlow transform has no XLA kernel, and Keras compiles no
        model that holds it on any backend.
        """
        batch, height, width, channels = ops.shape(images)  # the batch may be unknown until the call
        most_dy, most_dx = round(self.shift * height), round(self.shift * width)
        most = ops.convert_to_tensor([most_dy, most_dx], "int32")
        factors = keras.random.uniform((batch, 2), -self.shift, self.shift, seed=self.shift_seed)
        moves = ops.cast(ops.round(factors * ops.convert_to_tensor([height, width], factors.dtype)), "int32")
        moves = ops.minimum(ops.maximum(moves, -most), most)  # (B, 2): (dy, dx), a shift down and right
        padded = ops.pad(images, [[0, 0], [most_dy, most_dy], [most_dx, most_dx], [0, 0]])
        padded_height, padded_width = height + 2 * most_dy, width + 2 * most_dx
        # Output pixel (b, i, j) is padded pixel (b, i + most_dy - dy, j + most_dx - dx): a row of `pixels`.
        rows = ops.arange(height, dtype="int32")[None, :] + (most_dy - moves[:, :1])  # (B, H)
        columns = ops.arange(width, dtype="int32")[None, :] + (most_dx - moves[:, 1:])  # (B, W)
        first = ops.arange(batch, dtype="int32") * (padded_height * padded_width)  # (B,)
        index = first[:, None, None] + rows[:, :, None] * padded_width + columns[:, None, :]  # (B, H, W)
        pixels = ops.reshape(padded, (-1, channels))  # (B * padded_height * padded_width, C)
        return ops.take(pixels, index, axis=0)  # (B, H, W, C)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "shift": self.shift, "flip": self.flip, "seed": self.seed,
                "lighting": self.lighting, "eigenvalues": self.eigenvalues, "eigenvectors": self.eigenvectors}


def colour_basis(images, pixels="standardize"):
    """(eigenvalues (3,), eigenvectors (3, 3) as columns) of the colour covariance of the model's input pixels.

    Args:
        images: uint8 (N, H, W, 3), a sample of the training images.
        pixels: how the model normalizes them (`architecture.Variant.pixels`): "standardize" (per image) or
            "imagenet" (ImageNet's channel mean and std): the lighting noise is added in that space.

    Returns:
        The basis of `Augment`'s lighting noise, as lists, largest component first.
    """
    import numpy as np  # this module needs NumPy nowhere else

    layer = ChannelNormalization(dtype="float32") if pixels == "imagenet" else PerImageStandardization(dtype="float32")
    x = np.asarray(ops.convert_to_numpy(layer(images)), np.float64)
    values, vectors = np.linalg.eigh(np.cov(x.reshape(-1, 3), rowvar=False))
    order = np.argsort(values)[::-1]
    return values[order].tolist(), vectors[:, order].tolist()
