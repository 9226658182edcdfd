"""Pictures of the data and of training, written as PNG files (no display needed)."""

import io
import math
import warnings

import numpy as np

from alexnet.files import write_atomic


def render_png(figure, dpi=100):
    """Renders a matplotlib Figure to PNG bytes, trimmed to its content (bbox_inches="tight").

    Class names in scripts the installed fonts lack (CJK, say) are drawn as
    boxes; matplotlib's "Glyph ... missing" warnings for them are not shown
    (the names are intact in the JSON and markdown reports).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from")
        warnings.filterwarnings("ignore", message=r"Matplotlib currently does not support")
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_figure(figure, path):
    """Renders a matplotlib Figure to PNG and writes it atomically."""
    write_atomic(path, render_png(figure))


def sample_grid(images, labels, class_names, path, count=20, seed=0):
    """Writes `sample_figure` (5 columns) as a PNG file at `path` (same arguments)."""
    save_figure(sample_figure(images, labels, class_names, count, seed=seed), path)


def sample_figure(images, labels, class_names, count=20, columns=5, seed=0):
    """A grid of images, each titled with its class name (the tutorial's look at the data).

    Args:
        images: uint8 images (N, H, W, C).
        labels: int labels (N,).
        class_names: names in label order.
        count: how many images to show (a seeded random sample).
        columns: images per row.
        seed: chooses the sample.

    Returns:
        A matplotlib `Figure` (a notebook shows it; `save_figure` writes it).
    """
    from matplotlib.figure import Figure

    count = min(count, len(images))
    chosen = np.random.default_rng(seed).choice(len(images), size=count, replace=False)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(2 * columns, 2.2 * rows))
    for slot, i in enumerate(chosen):
        axes = figure.add_subplot(rows, columns, slot + 1)
        image = images[i]
        axes.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
        axes.set_title(short_label(class_names[int(labels[i])]), fontsize=10)
        axes.axis("off")
    return figure


def short_label(name, width=22):
    """A class name cut to fit a picture's title (ImageNet's can be long), with an ellipsis."""
    return name if len(name) <= width else name[:width - 1] + "…"


def training_curves(rows, path, loss_title="loss"):
    """Plots loss and accuracy per epoch, training against validation.

    Args:
        rows: history.csv's rows (`runs.read_history`): {"epoch", "loss", "val_loss", "accuracy", ...} each.
        path: PNG file to write.
        loss_title: the loss panel's title, to say what the loss includes (label smoothing, say).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    history = {key: [row[key] for row in rows] for key in (rows[0] if rows else {})}
    epochs = [int(e) + 1 for e in history.get("epoch", range(len(rows)))]
    figure = Figure(figsize=(11, 4))
    for index, metric in enumerate(("loss", "accuracy")):
        axes = figure.add_subplot(1, 2, index + 1)
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in history:
                axes.plot(epochs, history[key], marker="o", label=label)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(loss_title if metric == "loss" else metric)
        axes.grid(alpha=0.3)
        axes.legend()
    save_figure(figure, path)
