"""A model's class probabilities over test images: in memory or streamed from disk, plain, mirrored (test-time
augmentation) or over the paper's ten crops."""

import dataclasses

import numpy as np

from alexnet.pipeline.feed import Feed
from alexnet.pipeline.streams import SkippedFiles, decoded, evaluation_stream
from alexnet.settings.recipes import Crop


def predict_probabilities(model, images, batch_size=256, mirror=False):
    """Class probabilities (N, classes) for uint8 images (N, H, W, C), in batches.

    With mirror=True, of each image's mirror (left-right): test-time
    augmentation averages those with the images' own (`tta_probabilities`).
    A `StreamedImages` is read from disk: then (probabilities, rows read).
    """
    if isinstance(images, StreamedImages):
        return images.predict(model, batch_size, mirror)
    from alexnet.pipeline.arrays import evaluation_batches  # imports Keras: the backend is chosen by now

    count = len(images)
    if mirror:
        images = np.ascontiguousarray(images[:, :, ::-1])
    devices = _devices()  # a data-parallel model splits each batch over its devices
    feed = Feed(max(devices, batch_size // devices * devices), replicas=devices)
    batches = evaluation_batches(images, np.zeros(count, dtype=np.int64), feed)
    return np.asarray(model.predict(batches, verbose=0), dtype=np.float64)[:count]  # the padding comes last


def _devices():
    """Devices a data-parallel model splits each batch over (1 without a distribution)."""
    import keras

    distribution = keras.distribution.distribution()
    return len(distribution.device_mesh.devices.reshape(-1)) if distribution is not None else 1


def tta_probabilities(model, images, plain, batch_size=256):
    """Test-time augmentation with the flip the fast recipes train with: the images' probabilities (`plain`,
    already computed) averaged with their mirrors'. One pass over the images, not two."""
    mirrored = predict_probabilities(model, images, batch_size, mirror=True)
    if isinstance(images, StreamedImages):
        mirrored = mirrored[0]
    return (plain + mirrored) / 2


def ten_crop_model(model, input_shape, crop):
    """A model that takes images of `input_shape` and returns `model`'s probabilities averaged over the paper's
    ten crops of side `crop` (corners, centre, mirrors), each resized to what `model` takes."""
    import keras

    from alexnet.model.ten_crop import MeanOverCrops, TenCrop

    inputs = keras.Input(shape=tuple(input_shape), dtype="uint8", name="images")
    crops = TenCrop(crop, out=model.input_shape[1:3], name="ten_crop")(inputs)  # (B * 10, h, w, 3)
    outputs = MeanOverCrops(10, name="mean_over_crops", dtype="float32")(model(crops))
    wrapper = keras.Model(inputs, outputs, name=f"{model.name}_ten_crop")
    wrapper.jit_compile = getattr(model, "jit_compile", False)
    return wrapper


def ten_crop_probabilities(model, images, batch_size=256):
    """The paper's 10-crop test: probabilities (N, classes) averaged over four corner crops and the centre
    crop of each image, and their mirrors.

    For a streamed split evaluated on the centre crop of side S (random-resized
    recipes), the crops are taken, as in the paper, from the central square that
    the centre crop comes from (side S / `Crop.center`: 256 for 224) at side S. Otherwise
    (images at their stored size) they cover `Crop.center` of each side and are resized
    back to it. A `StreamedImages` gives (probabilities, rows read).
    """
    size = tuple(model.input_shape[1:3])
    if isinstance(images, StreamedImages) and images.transform.crop == "center":
        geometry = images.transform.geometry
        side = tuple(round(s / geometry.center) for s in size)
        whole = dataclasses.replace(images.transform, size=side, geometry=dataclasses.replace(geometry, center=1.0))
        images = StreamedImages(images.index, whole, images.strict)
        crop, input_shape = size, (*side, 3)
    else:
        crop, input_shape = tuple(round(s * Crop().center) for s in size), (*size, 3)
    return predict_probabilities(ten_crop_model(model, input_shape, crop), images, max(1, batch_size // 10))


class StreamedImages:
    """A streamed test split for the report: its files (a FileIndex), the evaluation transform, and strictness.

    Indexing gives decoded images (for the pictures of mistakes); `predict`
    streams them all through the model. A file that cannot be read is left
    out of the figures, with a warning.
    """

    def __init__(self, index, transform, strict=False):
        self.index, self.transform, self.strict = index, transform, strict
        self.rows = np.arange(len(index))  # the rows the last prediction read (all but skipped files)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        return decoded(self.index, [self.rows[i]], self.transform)[0][0]  # a file the prediction read

    def predict(self, model, batch_size, mirror=False):
        """(probabilities of the rows read, those rows)."""
        n, skips, devices = len(self.index), SkippedFiles(self.strict), _devices()
        transform = dataclasses.replace(self.transform, mirror=True) if mirror else self.transform
        feed = Feed(max(devices, batch_size // devices * devices), replicas=devices, transform=transform, skips=skips)
        stream = evaluation_stream(self.index, np.zeros(n, np.int64), feed)
        steps = feed.evaluation_steps(n)
        outputs = np.asarray(model.predict(stream, steps=steps, verbose=0), dtype=np.float64)
        rows = np.setdiff1d(np.arange(n), sorted(skips.rows[-1]))
        # Padding comes last. tf.data drops a file it cannot read; Grain keeps its place (weight 0).
        padding = feed.evaluation_size(n) - n
        outputs = outputs[:n][rows] if len(outputs) - padding == n else outputs[:len(rows)]
        self.rows = rows
        return outputs, rows
