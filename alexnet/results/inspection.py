"""`alexnet inspect`: what a trained model learned, as the paper showed it, and where it looks.

    inspect("runs/20261127-213000-alexnet")   # -> inspect/filters.png, neighbours.png, gradcam.png

- filters.png: the paper's Figure 3, conv1's kernels as colour tiles (`pictures.filter_grid`).
- neighbours.png: the paper's Figure 4: test images with their top-5 bars, and test images beside the training
  images nearest to them by the last hidden layer's 4096-d output (fc2, after its ReLU), found in one streamed
  pass over the training images that keeps only the nearest (memory holds a batch, whatever the data).
- gradcam.png: Grad-CAM over test images, right and wrong ones (`gradcam.heat_maps`).
The pictures also go to the run's TensorBoard log (logs/inspect) where TensorFlow is installed.
"""

import logging
from pathlib import Path

import numpy as np

from alexnet import console
from alexnet.backend import tensorflow
from alexnet.errors import UsageError
from alexnet.files import writing
from alexnet.results import gradcam, pictures
from alexnet.pipeline.streams import decoded
from alexnet.results.inference import StreamedImages, predict_probabilities
from alexnet.results.plots import save_figure
from alexnet.runs import RunFolder

log = logging.getLogger(__name__)

STREAMED_SAMPLE = 10_000  # training images searched for neighbours by default when they stream from disk
CHUNK = 1024  # training images per feature batch


def nearest_neighbours(queries, chunks, k=6):
    """The k training rows nearest to each query by Euclidean distance, from feature chunks seen once.

    Args:
        queries: (Q, D) features.
        chunks: an iterable of (rows (n,), features (n, D)).

    Returns:
        (rows (Q, k) int64, distances (Q, k) float64), nearest first.
    """
    queries = np.asarray(queries, np.float64)
    best_rows = np.full((len(queries), 0), -1, np.int64)
    best = np.zeros((len(queries), 0))
    for rows, features in chunks:
        features = np.asarray(features, np.float64)
        squared = ((queries ** 2).sum(1)[:, None] - 2 * queries @ features.T + (features ** 2).sum(1)[None])
        distances = np.sqrt(np.maximum(squared, 0))
        merged = np.concatenate([best, distances], axis=1)
        merged_rows = np.concatenate([best_rows, np.broadcast_to(np.asarray(rows, np.int64), distances.shape)],
                                     axis=1)
        order = np.argsort(merged, axis=1, kind="stable")[:, :k]
        best, best_rows = np.take_along_axis(merged, order, 1), np.take_along_axis(merged_rows, order, 1)
    return best_rows, best


def _images(split, rows):
    """(uint8 images, the rows they are) of `rows` of a split: arrays, or decoded files (a file that cannot be
    read is left out, with a warning)."""
    rows = np.asarray(rows, np.int64)
    if isinstance(split.images, StreamedImages):
        return decoded(split.images.index, rows, split.images.transform)
    return split.images[rows], rows


def _feature_chunks(features, split, rows):
    """(rows, fc2 features) of the training images `rows` that can be read, a chunk at a time."""
    for start in range(0, len(rows), CHUNK):
        images, read = _images(split, rows[start:start + CHUNK])
        if len(read):
            yield read, predict_probabilities(features, images, batch_size=256)


def neighbours_figure(model, training, test, sample=None, seed=0):
    """neighbours.png's Figure, from `LabelledImages` of training and test images; `sample`: how many training
    images to search (all where None and they are in memory, else STREAMED_SAMPLE)."""
    import keras

    rng = np.random.default_rng(seed)
    left_rows = np.sort(rng.choice(len(test.images), min(8, len(test.images)), replace=False))
    right_rows = np.sort(rng.choice(len(test.images), min(5, len(test.images)), replace=False))
    left, left_rows = _images(test, left_rows)
    probabilities = predict_probabilities(model, left)
    features = keras.Model(model.input, model.get_layer("fc2").output)
    queries, right_rows = _images(test, right_rows)
    count = len(training.images)
    if sample is None and isinstance(training.images, StreamedImages):
        sample = STREAMED_SAMPLE
    searched = np.arange(count) if sample is None or sample >= count else \
        np.sort(rng.choice(count, sample, replace=False))
    note = (f"searched: all {count:,} training images" if len(searched) == count else
            f"searched: a seeded sample of {len(searched):,} of the {count:,} training images")
    log.info(f"Finding the nearest training images by fc2 features ({note.split(': ')[1]})")
    near_rows, _ = nearest_neighbours(predict_probabilities(features, queries), _feature_chunks(features, training,
                                                                                                 searched))
    near = np.stack([_images(training, rows)[0] for rows in near_rows])  # rows read once before: they decode
    return pictures.neighbours_figure((left, test.labels[left_rows], probabilities),
                                      (queries, test.labels[right_rows], near, training.labels[near_rows]),
                                      test.class_names, note)


def gradcam_figure(model, test, seed=0, count=8):
    """gradcam.png's Figure: Grad-CAM over up to `count` test images, half right and half wrong where there are
    both, chosen from a seeded sample of 256."""
    rng = np.random.default_rng([seed, 1])
    sample = np.sort(rng.choice(len(test.images), min(256, len(test.images)), replace=False))
    images, sample = _images(test, sample)
    predicted = predict_probabilities(model, images).argmax(axis=1)
    right = np.flatnonzero(predicted == test.labels[sample])
    wrong = np.flatnonzero(predicted != test.labels[sample])
    take = min(len(wrong), count // 2)
    chosen = np.sort(np.concatenate([rng.permutation(wrong)[:take], rng.permutation(right)[:count - take]]))
    _, maps = gradcam.heat_maps(model, images[chosen])
    overlays = [gradcam.overlay(image, heat) for image, heat in zip(images[chosen], maps)]
    return pictures.gradcam_figure(images[chosen], overlays, test.labels[sample][chosen], predicted[chosen],
                                   test.class_names)


def inspect(target, data=None, out=None, neighbours_from=None, seed=0):
    """Writes filters.png, neighbours.png and gradcam.png for a run folder's model (or a .keras file).

    Args:
        target: a run folder or a .keras file.
        data: a `--data` value whose training and test images the pictures use; None: the run's own.
        out: the folder to write; default: inspect/ in the run folder (beside a bare model file: inspect-<name>/).
        neighbours_from: search a seeded sample of this many training images for neighbours; None: all of them
            for data in memory, 10,000 for streamed data.
        seed: chooses the images shown.

    Returns:
        {"out": the folder, "pictures": [their paths]}.

    Raises:
        UsageError: For a missing model or run folder, a bare model file without `data`, or data that does not fit.
        AlexnetError: For a model file that cannot be loaded, or data that cannot be read.
    """
    from alexnet.results.evaluation import model_splits
    from alexnet.results.loading import load_model, resolve_target

    console.ensure_setup()
    target = resolve_target(target, "inspected")
    model = load_model(target.model_file)
    if "fc2" not in [layer.name for layer in model.layers] or "conv1" not in [layer.name for layer in model.layers]:
        raise UsageError(f"{target.model_file} is not one of this project's AlexNets (no conv1 or fc2 layer)")
    out = Path(out) if out else (target.run.path / RunFolder.INSPECT if target.run is not None else
                                 target.model_file.parent / f"{RunFolder.INSPECT}-{target.model_file.stem}")
    (training, test), _ = model_splits(model, target.run, data)
    if not len(training.images) or not len(test.images):
        raise UsageError("inspect needs training and test images; the data has "
                         f"{len(training.images)} and {len(test.images)}")
    with writing(out, "write the pictures into"):
        out.mkdir(parents=True, exist_ok=True)
    figures = {"filters": pictures.filters_figure(np.asarray(model.get_layer("conv1").kernel), model.name),
               "neighbours": neighbours_figure(model, training, test, neighbours_from, seed),
               "gradcam": gradcam_figure(model, test, seed)}
    paths = []
    for name, figure in figures.items():
        paths.append(out / f"{name}.png")
        save_figure(figure, paths[-1])
        log.info(f"Wrote {paths[-1]}")
    if target.run is not None:
        _to_tensorboard(paths, target.run.log_dir("inspect"))
    return {"out": str(out), "pictures": [str(p) for p in paths]}


def _to_tensorboard(paths, log_dir):
    """The pictures as TensorBoard images (inspect/<name>), where TensorFlow is installed."""
    from PIL import Image

    tf = tensorflow()
    if tf is None:
        return

    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            for path in paths:
                with Image.open(path) as image:
                    tf.summary.image(f"inspect/{path.stem}", np.asarray(image.convert("RGB"))[None], step=0)
    finally:
        writer.close()
