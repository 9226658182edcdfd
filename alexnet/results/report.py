"""Evaluation reports: what the model got right and wrong on the test split.

Writes report.json, report.md, confusion.png and mistakes.png, and (where a
TensorBoard log folder is given) the two pictures to its images tab.
"""

import dataclasses
import io
import math
from pathlib import Path

import numpy as np

from alexnet import runs
from alexnet.results import plots
from alexnet.backend import tensorflow
from alexnet.files import write_atomic, write_json


def predict_probabilities(model, images, batch_size=256, mirror=False):
    """Class probabilities (N, classes) for uint8 images (N, H, W, C), in batches.

    With mirror=True, of each image's mirror (left-right): test-time
    augmentation averages those with the images' own (`tta_probabilities`).
    A `StreamedImages` is read from disk: then (probabilities, rows read).
    """
    if isinstance(images, StreamedImages):
        return images.predict(model, batch_size, mirror)
    from alexnet.pipeline.arrays import make_dataset

    count = len(images)
    if mirror:
        images = np.ascontiguousarray(images[:, :, ::-1])
    devices = _devices()
    pad = (-count) % devices  # a data-parallel model splits each batch over its devices: pad, then drop
    if pad:
        images = np.concatenate([images, np.repeat(images[:1], pad, axis=0)])
        batch_size = max(devices, batch_size // devices * devices)
    batches = make_dataset(images, np.zeros(len(images), dtype=np.int64), batch_size)
    return np.asarray(model.predict(batches, verbose=0), dtype=np.float64)[:count]


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

    from alexnet.model.layers import MeanOverCrops, TenCrop

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
    the centre crop comes from (side S / 0.875: 256 for 224) at side S. Otherwise
    (images at their stored size) they cover 0.875 of each side and are resized
    back to it. A `StreamedImages` gives (probabilities, rows read).
    """
    size = tuple(model.input_shape[1:3])
    if isinstance(images, StreamedImages) and images.transform.crop == "center":
        side = tuple(round(s / images.transform.center) for s in size)
        images = StreamedImages(images.index, dataclasses.replace(images.transform, size=side, center=1.0),
                                images.strict)
        crop, input_shape = size, (*side, 3)
    else:
        crop, input_shape = tuple(round(s * 0.875) for s in size), (*size, 3)
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
        from alexnet.pipeline.streams import decoded

        return decoded(self.index, [self.rows[i]], self.transform)[0]

    def predict(self, model, batch_size, mirror=False):
        """(probabilities of the rows read, those rows)."""
        import dataclasses

        from alexnet.pipeline import order
        from alexnet.pipeline.streams import SkippedFiles, evaluation_stream

        n, skips, devices = len(self.index), SkippedFiles(self.strict), _devices()
        batch_size = max(devices, batch_size // devices * devices)
        transform = dataclasses.replace(self.transform, mirror=True) if mirror else self.transform
        stream = evaluation_stream(self.index, np.zeros(n, np.int64), batch_size, shard=(0, 1), transform=transform,
                                   num_classes=None, skips=skips, replicas=devices)
        steps = order.evaluation_steps(n, batch_size, devices)
        outputs = np.asarray(model.predict(stream, steps=steps, verbose=0), dtype=np.float64)
        rows = np.setdiff1d(np.arange(n), sorted(skips.rows[-1]))
        # Padding comes last. tf.data drops a file it cannot read; Grain keeps its place (weight 0).
        padding = (-n) % devices
        outputs = outputs[:n][rows] if len(outputs) - padding == n else outputs[:len(rows)]
        self.rows = rows
        return outputs, rows


def classification_metrics(probabilities, labels, class_names):
    """Top-1/top-5 accuracy, loss, the confusion matrix and per-class precision, recall and F1.

    Args:
        probabilities: (N, classes) predicted probabilities.
        labels: (N,) true labels.
        class_names: names in label order.

    Returns:
        A JSON-ready dict.
    """
    labels = np.asarray(labels, dtype=np.int64)
    classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    k = min(5, classes)
    top_k = np.argsort(-probabilities, axis=1)[:, :k]
    confusion = np.zeros((classes, classes), dtype=np.int64)  # rows: true, columns: predicted
    np.add.at(confusion, (labels, predicted), 1)
    true_positives = np.diag(confusion).astype(np.float64)
    per_class = {}
    for c, name in enumerate(class_names):
        predicted_c, actual_c = confusion[:, c].sum(), confusion[c, :].sum()
        precision = true_positives[c] / predicted_c if predicted_c else 0.0
        recall = true_positives[c] / actual_c if actual_c else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(actual_c)}
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "test_images": int(len(labels)),
        "test_loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
        "top1_accuracy": float(np.mean(predicted == labels)),
        f"top{k}_accuracy": float(np.mean((top_k == labels[:, None]).any(axis=1))),
        "top_k": k,  # 5, or the number of classes when there are fewer
        "per_class": per_class,
        "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])),
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
    }


def _markdown(metrics):
    lines = [
        "# Evaluation report", "",
        f"- test images: {metrics['test_images']}",
        f"- test loss: {metrics['test_loss']:.4f}",
        f"- top-1 accuracy: {metrics['top1_accuracy']:.2%}",
    ]
    if "tta" in metrics:
        lines.append(f"- top-1 accuracy with test-time augmentation (image and mirror averaged): "
                     f"{metrics['tta']['top1_accuracy']:.2%}")
    k = metrics["top_k"]
    lines.append(f"- top-{k} accuracy: {metrics[f'top{k}_accuracy']:.2%}")
    if "ten_crop" in metrics:
        lines.append(f"- 10-crop test (four corners and the centre, each with its mirror, averaged): top-1 "
                     f"{metrics['ten_crop']['top1_accuracy']:.2%}, top-{k} {metrics['ten_crop'][f'top{k}_accuracy']:.2%}")
    lines.append(f"- macro F1: {metrics['macro_f1']:.3f}")
    if len(metrics["class_names"]) > FULL_MATRIX_CLASSES:
        lines += ["", "Most frequent confusions (true -> predicted: images):", ""]
        lines += [f"- {true} -> {predicted}: {count}" for true, predicted, count in
                  top_confusions(metrics["confusion_matrix"], metrics["class_names"])]
    lines += ["",
              "| class | precision | recall | F1 | images |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, m in metrics["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines += ["", f"![confusion matrix]({runs.CONFUSION_PNG})", "", f"![mistakes]({runs.MISTAKES_PNG})", ""]
    return "\n".join(lines)


FULL_MATRIX_CLASSES = 20  # above this many classes, the picture shows the top confusions, not the matrix
TOP_CONFUSIONS = 25


def top_confusions(confusion, class_names, count=TOP_CONFUSIONS):
    """The `count` most frequent mistakes: [(true name, predicted name, images)], most frequent first."""
    confusion = np.array(confusion)
    np.fill_diagonal(confusion, 0)
    flat = np.argsort(-confusion, axis=None, kind="stable")[:count]
    pairs = [np.unravel_index(i, confusion.shape) for i in flat]
    return [(class_names[t], class_names[p], int(confusion[t, p])) for t, p in pairs if confusion[t, p] > 0]


def confusion_figure(confusion, class_names):
    """The confusion matrix as a picture; for more than FULL_MATRIX_CLASSES classes (a 1000x1000 matrix is
    unreadable), a bar chart of the most frequent confusions instead."""
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion)
    if len(class_names) > FULL_MATRIX_CLASSES:
        pairs = top_confusions(confusion, class_names)
        figure = Figure(figsize=(9, 0.32 * max(5, len(pairs)) + 1.2))
        axes = figure.add_subplot(1, 1, 1)
        labels = [f"{plots.short_label(true)} -> {plots.short_label(predicted)}" for true, predicted, _ in pairs]
        axes.barh(range(len(pairs)), [count for _, _, count in pairs], color="tab:blue")
        axes.set_yticks(range(len(pairs)), labels, fontsize=8)
        axes.invert_yaxis()
        axes.set_xlabel("test images")
        axes.xaxis.get_major_locator().set_params(integer=True)  # counts
        axes.set_title(f"most frequent confusions (true -> predicted) of {len(class_names)} classes")
        if not pairs:
            axes.text(0.5, 0.5, "no misclassified test images", ha="center", transform=axes.transAxes)
        return figure
    size = max(5, 0.6 * len(class_names) + 2)
    figure = Figure(figsize=(size + 1, size))
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("confusion matrix (test images)")
    threshold = confusion.max() / 2 if confusion.size else 0
    for (i, j), count in np.ndenumerate(confusion):
        axes.text(j, i, str(count), ha="center", va="center", fontsize=8,
                  color="white" if count > threshold else "black")
    return figure


def mistakes_figure(images, labels, probabilities, class_names, count=25, columns=5):
    """A grid of misclassified images titled 'true -> predicted (probability)', most confident first."""
    from matplotlib.figure import Figure

    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    rows = max(1, math.ceil(len(wrong) / columns))
    figure = Figure(figsize=(2.4 * columns, 2.5 * rows))
    if not len(wrong):
        figure.text(0.5, 0.5, "no misclassified test images", ha="center")
    for slot, i in enumerate(wrong):
        axes = figure.add_subplot(rows, columns, slot + 1)
        axes.imshow(images[i])
        true, guess = (plots.short_label(class_names[c], 18) for c in (labels[i], predicted[i]))
        axes.set_title(f"{true} -> {guess}\n"
                       f"({probabilities[i, predicted[i]]:.0%})", fontsize=9)
        axes.axis("off")
    return figure


def _figure_array(figure):
    """Renders a figure to a uint8 RGB array (for TensorBoard), trimmed as the PNG on disk is."""
    from PIL import Image

    with Image.open(io.BytesIO(plots.render_png(figure))) as image:
        return np.asarray(image.convert("RGB"))


def write_report(model, images, labels, class_names, out_dir, log_dir=None, step=0, batch_size=256, tta=False,
                 ten_crop=False):
    """Evaluates `model` on (images, labels) and writes the report files into out_dir.

    With tta=True the report also holds, under "tta", the figures of the
    predictions averaged over each image and its mirror; with ten_crop=True,
    under "ten_crop", those of the paper's 10-crop test. The other figures
    are always those of the images alone (one centre crop). `images` is a uint8 array, or a
    `StreamedImages` read from disk.

    Returns:
        The metrics dict (also in report.json).
    """
    out_dir = Path(out_dir)
    probabilities = predict_probabilities(model, images, batch_size)
    labels = np.asarray(labels)
    if isinstance(images, StreamedImages):  # files that could not be read are left out
        probabilities, rows = probabilities
        labels = labels[rows]
    metrics = classification_metrics(probabilities, labels, class_names)
    if tta:
        averaged = classification_metrics(tta_probabilities(model, images, probabilities, batch_size), labels,
                                          class_names)
        metrics["tta"] = _headline(averaged)
    if ten_crop:
        averaged = ten_crop_probabilities(model, images, batch_size)
        averaged = averaged[0] if isinstance(images, StreamedImages) else averaged
        metrics["ten_crop"] = _headline(classification_metrics(averaged, labels, class_names))
    write_json(out_dir / runs.REPORT_JSON, metrics)
    write_atomic(out_dir / runs.REPORT_MD, _markdown(metrics))
    confusion = confusion_figure(metrics["confusion_matrix"], class_names)
    mistakes = mistakes_figure(images, np.asarray(labels), probabilities, class_names)
    plots.save_figure(confusion, out_dir / runs.CONFUSION_PNG)
    plots.save_figure(mistakes, out_dir / runs.MISTAKES_PNG)
    tf = tensorflow() if log_dir is not None else None
    if tf is not None:
        writer = tf.summary.create_file_writer(str(log_dir))
        with writer.as_default():  # the same tags as train/ and validation/, so the three share a chart
            tf.summary.scalar("epoch_loss", metrics["test_loss"], step=step)
            tf.summary.scalar("epoch_accuracy", metrics["top1_accuracy"], step=step)
            tf.summary.image("test_report/confusion_matrix", _figure_array(confusion)[None], step=step)
            tf.summary.image("test_report/mistakes", _figure_array(mistakes)[None], step=step)
        writer.close()
    return metrics


def _headline(metrics):
    """The figures of a test-time variant (TTA, 10-crop) that the report keeps beside the plain ones."""
    return {k: v for k, v in metrics.items() if k in ("test_loss", "macro_f1") or k.startswith("top")}


def summary_lines(report, smoothing=0.0):
    """What the console says of a report (report.json's names): accuracy, top-k, loss, and TTA if any."""
    k = report["top_k"]
    lines = [f"Test accuracy {report['top1_accuracy']:.4f}, top-{k} {report[f'top{k}_accuracy']:.4f}, test loss "
             f"{report['test_loss']:.4f} on {report['test_images']} images"
             + (" (cross-entropy without label smoothing)" if smoothing else "")]
    if "tta" in report:
        lines.append(f"With test-time augmentation (image and mirror averaged): accuracy "
                     f"{report['tta']['top1_accuracy']:.4f}, loss {report['tta']['test_loss']:.4f}")
    if "ten_crop" in report:
        lines.append(f"10-crop test (corners, centre, mirrors averaged): accuracy "
                     f"{report['ten_crop']['top1_accuracy']:.4f}, top-{k} {report['ten_crop'][f'top{k}_accuracy']:.4f}, "
                     f"loss {report['ten_crop']['test_loss']:.4f}")
    return lines
