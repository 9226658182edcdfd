"""Class activation maps from gradients: where in an image the evidence for a class lies, on every backend.

    probabilities, maps = heat_maps(model, images)     # maps: (N, h, w) in [0, 1], at the last convolution's size

Two forms, both from the gradient of the class's logit with respect to the last convolution's output A:
- "hirescam" (the default; Draelos and Carin 2020): relu(sum over channels of gradient x A), position by
  position. Faithful to a network whose dense layers read the flattened feature map, as AlexNet's do.
- "gradcam" (Selvaraju et al. 2017): each channel weighted by its gradient averaged over the map. It cannot tell
  where a channel's evidence counts, only that it does: on the test images of tests/test_inspect.py (the class is
  which half holds a bright square), measured once on TensorFlow, its peak fell on the square (within half a map
  cell) in 11% of them, HiResCAM's in 86%.
Keras 3 has no backend-neutral call for such a gradient, so `gradients` is the one function that takes it, per
backend (tf.GradientTape, jax.vjp, torch.autograd); everything else uses `keras.ops`.
"""

import numpy as np


def gradients(function, inputs):
    """(function(inputs), the gradient of its sum with respect to `inputs`), as float32 NumPy arrays, on the
    active Keras backend. `function` maps a float tensor to a tensor, with `keras.ops` or Keras layers."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
            total = tf.reduce_sum(tf.cast(y, tf.float32))
        return np.asarray(y, np.float32), np.asarray(tape.gradient(total, x), np.float32)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        y, pullback = jax.vjp(function, jnp.asarray(inputs))
        (grad,) = pullback(jnp.ones_like(y))
        return np.asarray(y, np.float32), np.asarray(grad, np.float32)
    if backend == "torch":
        import torch

        with torch.enable_grad():
            x = keras.ops.convert_to_tensor(inputs).detach().requires_grad_(True)
            y = function(x)
            (grad,) = torch.autograd.grad(y.float().sum(), x)  # not .backward(): the weights' .grad stay empty
        return y.detach().float().cpu().numpy(), grad.float().cpu().numpy()
    raise ValueError(f"no gradient for the {backend} backend")


def last_convolution(model):
    """The name of the model's last Conv2D layer (conv5 in every AlexNet here)."""
    import keras

    convolutions = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if not convolutions:
        raise ValueError(f"{model.name} has no convolution layer for Grad-CAM")
    return convolutions[-1]


def _chain_after(model, name):
    """The layers after `name`, up to the output layer (`predictions`), in order: the models here are chains."""
    layers = model.layers
    start = [layer.name for layer in layers].index(name) + 1
    stop = [layer.name for layer in layers].index("predictions")
    return layers[start:stop], model.get_layer("predictions")


def heat_maps(model, images, classes=None, batch_size=32, method="hirescam"):
    """Class activation maps of `images` (uint8, as the model takes them) for `classes` (default: each image's top
    class), by `method`: "hirescam" or "gradcam" (see the module's docstring).

    The class score is the logit (the output layer before its softmax), its gradient is taken with respect to the
    last convolution's output (after its ReLU), and the map, through a ReLU, is scaled to [0, 1] per image.

    Returns:
        (probabilities (N, classes) float64, maps (N, h, w) float32).
    """
    import keras

    if method not in ("hirescam", "gradcam"):
        raise ValueError(f"method must be 'hirescam' or 'gradcam'. Received: {method!r}")
    conv = last_convolution(model)
    features = keras.Model(model.input, model.get_layer(conv).output)
    logits = _logits_after(model, conv)
    probabilities, maps = [], []
    for start in range(0, len(images), batch_size):
        activations = np.asarray(keras.ops.convert_to_numpy(features(images[start:start + batch_size],
                                                                     training=False)), np.float32)
        probs = np.asarray(keras.ops.convert_to_numpy(keras.ops.softmax(logits(activations))), np.float64)
        chosen = probs.argmax(axis=1) if classes is None else np.asarray(classes[start:start + batch_size])
        one_hot = keras.ops.convert_to_tensor(np.eye(probs.shape[1], dtype=np.float32)[chosen])
        _, grads = gradients(lambda a: keras.ops.sum(logits(a) * one_hot, axis=-1), activations)
        weights = grads if method == "hirescam" else grads.mean(axis=(1, 2), keepdims=True)  # Grad-CAM: per channel
        cam = np.maximum((weights * activations).sum(axis=-1), 0)  # (B, h, w)
        peak = cam.max(axis=(1, 2), keepdims=True)
        maps.append((cam / np.where(peak > 0, peak, 1)).astype(np.float32))
        probabilities.append(probs)
    return np.concatenate(probabilities), np.concatenate(maps)


def _logits_after(model, name):
    """A function of the output of layer `name` -> the model's logits (its output layer before the softmax), through
    the layers between, in inference mode: the models here are chains."""
    import inspect

    import keras

    names = [layer.name for layer in model.layers]
    between = model.layers[names.index(name) + 1:names.index("predictions")]
    output = model.get_layer("predictions")

    def logits(x):
        for layer in between:
            x = layer(x, training=False) if "training" in inspect.signature(layer.call).parameters else layer(x)
        return keras.ops.matmul(keras.ops.cast(x, "float32"), keras.ops.cast(output.kernel, "float32")) + \
            keras.ops.cast(output.bias, "float32")

    return logits


def upsampled(heat, size):
    """A map (h, w) in [0, 1] resized bilinearly to `size` (height, width), as float32."""
    from PIL import Image

    image = Image.fromarray(np.asarray(heat, np.float32), mode="F")
    return np.asarray(image.resize((size[1], size[0]), Image.BILINEAR), np.float32)


def overlay(image, heat, alpha=0.45):
    """An RGB uint8 picture: `image` (H, W, 3 uint8) under the map (h, w in [0, 1]) in the jet colour map."""
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(upsampled(heat, image.shape[:2]), 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * colours, 0, 255).astype(np.uint8)
