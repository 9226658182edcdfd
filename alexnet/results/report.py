"""Evaluation reports: what the model got right and wrong on the test split.

Writes report.json, report.md, confusion.png and mistakes.png, and (where a
TensorBoard log folder is given) the two pictures to its images tab.
"""

import dataclasses
import io
import math
from pathlib import Path
from typing import Optional

import numpy as np

from alexnet import runs
from alexnet.backend import tensorflow
from alexnet.files import write_atomic, write_json
from alexnet.results import plots
from alexnet.results.inference import StreamedImages, predict_probabilities, ten_crop_probabilities, tta_probabilities
from alexnet.settings.recipes import top_k


@dataclasses.dataclass(frozen=True)
class LabelledImages:
    """What a report is about: the images (uint8 (N, H, W, 3), or a `StreamedImages`), their labels, and the class
    names in label order."""

    images: object
    labels: np.ndarray
    class_names: list


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    """How a report is made beyond the plain figures, and where TensorBoard gets them."""

    batch_size: int = 256  # images per prediction batch
    tta: bool = False  # also the figures of each image's and its mirror's predictions averaged
    ten_crop: bool = False  # also the figures of the paper's 10-crop test
    log_dir: Optional[Path] = None  # a TensorBoard folder for the test figures and pictures (None: none)
    step: int = 0  # the TensorBoard step they are written at (a run's last epoch)


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
    k = top_k(classes)
    top = np.argsort(-probabilities, axis=1)[:, :k]
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
        f"top{k}_accuracy": float(np.mean((top == labels[:, None]).any(axis=1))),
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


def write_report(model, test, out_dir, options=ReportOptions()):
    """Evaluates `model` on `test` (a `LabelledImages`) and writes the report files into out_dir.

    With options.tta the report also holds, under "tta", the figures of the
    predictions averaged over each image and its mirror; with options.ten_crop,
    under "ten_crop", those of the paper's 10-crop test. The other figures are
    always those of the images alone (one centre crop). A streamed test split
    leaves out the files that could not be read.

    Returns:
        The metrics dict (also in report.json).
    """
    out_dir, images, class_names = Path(out_dir), test.images, test.class_names
    probabilities = predict_probabilities(model, images, options.batch_size)
    labels = np.asarray(test.labels)
    if isinstance(images, StreamedImages):  # files that could not be read are left out
        probabilities, rows = probabilities
        labels = labels[rows]
    metrics = classification_metrics(probabilities, labels, class_names)
    if options.tta:
        averaged = tta_probabilities(model, images, probabilities, options.batch_size)
        metrics["tta"] = _headline(classification_metrics(averaged, labels, class_names))
    if options.ten_crop:
        averaged = ten_crop_probabilities(model, images, options.batch_size)
        averaged = averaged[0] if isinstance(images, StreamedImages) else averaged
        metrics["ten_crop"] = _headline(classification_metrics(averaged, labels, class_names))
    write_json(out_dir / runs.REPORT_JSON, metrics)
    write_atomic(out_dir / runs.REPORT_MD, _markdown(metrics))
    confusion = confusion_figure(metrics["confusion_matrix"], class_names)
    mistakes = mistakes_figure(images, labels, probabilities, class_names)
    plots.save_figure(confusion, out_dir / runs.CONFUSION_PNG)
    plots.save_figure(mistakes, out_dir / runs.MISTAKES_PNG)
    tf = tensorflow() if options.log_dir is not None else None
    if tf is not None:
        writer = tf.summary.create_file_writer(str(options.log_dir))
        with writer.as_default():  # the same tags as train/ and validation/, so the three share a chart
            for metric, value in (("loss", metrics["test_loss"]), ("accuracy", metrics["top1_accuracy"])):
                tf.summary.scalar(runs.tensorboard_tag(metric), value, step=options.step)
            tf.summary.image("test_report/confusion_matrix", _figure_array(confusion)[None], step=options.step)
            tf.summary.image("test_report/mistakes", _figure_array(mistakes)[None], step=options.step)
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


def metrics_from_report(report, epochs):
    """metrics.json's figures from a test report (report.json's names): the one translation between them."""
    k = report["top_k"]
    metrics = {"test_loss": report["test_loss"], "test_accuracy": report["top1_accuracy"],
               f"test_top{k}_accuracy": report[f"top{k}_accuracy"], "top_k": k,
               "test_images": report["test_images"], "epochs": epochs}
    if "tta" in report:
        metrics |= {"tta_test_accuracy": report["tta"]["top1_accuracy"], "tta_test_loss": report["tta"]["test_loss"]}
    if "ten_crop" in report:
        metrics |= {"ten_crop_test_accuracy": report["ten_crop"]["top1_accuracy"],
                    f"ten_crop_test_top{k}_accuracy": report["ten_crop"][f"top{k}_accuracy"],
                    "ten_crop_test_loss": report["ten_crop"]["test_loss"]}
    return metrics
