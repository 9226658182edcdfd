"""The pictures of `alexnet inspect`: the paper's Figure 3 (first-layer kernels), its Figure 4 (top-5 bars and
nearest neighbours by the last hidden layer), and Grad-CAM heat maps. Each returns a matplotlib Figure."""

import math

import numpy as np

from alexnet.results.plots import short_label


def filter_grid(kernel, scale=4, gap=1, columns=None):
    """The first layer's kernels as one RGB picture, as the paper's Figure 3 shows them.

    Each kernel (kh, kw, 3) is min-max scaled on its own to 0-255, enlarged `scale` times (nearest pixel), and
    placed row by row, `columns` to a row (12 for 96 kernels, 8 otherwise), `gap` white pixels apart.

    Args:
        kernel: conv1's kernel (kh, kw, 3, filters).

    Returns:
        uint8 (H, W, 3): tile (r, c) starts at row gap + r * (kh * scale + gap), column gap + c * (kw * scale + gap).
    """
    kh, kw, channels, filters = kernel.shape
    columns = columns or (12 if filters % 12 == 0 and filters >= 96 else 8)
    rows = math.ceil(filters / columns)
    th, tw = kh * scale, kw * scale
    grid = np.full((gap + rows * (th + gap), gap + columns * (tw + gap), 3), 255, np.uint8)
    for f in range(filters):
        tile = np.asarray(kernel[..., f], np.float64)
        low, high = tile.min(), tile.max()
        tile = np.round((tile - low) / (high - low) * 255) if high > low else np.zeros_like(tile)
        tile = np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
        r, c = divmod(f, columns)
        top, left = gap + r * (th + gap), gap + c * (tw + gap)
        grid[top:top + th, left:left + tw] = tile.astype(np.uint8)
    return grid


def filters_figure(kernel, model_name):
    """filters.png: `filter_grid` with a title that says what it shows."""
    from matplotlib.figure import Figure

    grid = filter_grid(kernel)
    height, width = grid.shape[:2]
    figure = Figure(figsize=(width / 60, height / 60 + 0.5))
    axes = figure.add_subplot(1, 1, 1)
    axes.imshow(grid, interpolation="nearest")
    axes.set_title(f"{model_name}: the {kernel.shape[-1]} kernels of conv1 ({kernel.shape[0]}x{kernel.shape[1]}x"
                   f"{kernel.shape[2]}), each scaled to its own range", fontsize=10)
    axes.axis("off")
    return figure


def _show(axes, image, title, colour="black"):
    axes.imshow(image, interpolation="nearest")
    axes.set_title(title, fontsize=8, color=colour)
    axes.axis("off")


def neighbours_figure(left, right, class_names, note=""):
    """neighbours.png, the paper's Figure 4.

    Args:
        left: (images, labels, probabilities) of test images: each shown with its top-5 probabilities as bars, the
            true class's bar red and its name starred.
        right: (images, labels, neighbour images, neighbour labels) of test images, each followed by its nearest
            training images (N, k, H, W, 3) by the last hidden layer's output.
        class_names: names in label order.
        note: a line under the title (how many training images were searched).
    """
    from matplotlib.figure import Figure

    images, labels, probabilities = left
    queries, query_labels, near, near_labels = right
    k = near.shape[1]
    figure = Figure(figsize=(4.6 + 1.25 * (k + 1), max(2.0 * len(images) / 2, 1.5 * len(queries)) + 0.8))
    grid = figure.add_gridspec(max(len(images), 1), 2, width_ratios=[4.6, 1.25 * (k + 1)], wspace=0.05)
    pictures = grid[:, 0].subgridspec(len(images), 2, width_ratios=[1, 2.2], wspace=0.1, hspace=0.45)
    for i, (image, label, p) in enumerate(zip(images, labels, probabilities)):
        _show(figure.add_subplot(pictures[i, 0]), image, "")
        axes = figure.add_subplot(pictures[i, 1])
        top = np.argsort(-p)[:5][::-1]
        axes.barh(range(len(top)), p[top], color=["tab:red" if t == label else "tab:blue" for t in top])
        axes.set_yticks(range(len(top)), [short_label(class_names[t], 18) + (" *" if t == label else "")
                                          for t in top], fontsize=7)
        axes.set_xlim(0, 1)
        axes.tick_params(axis="x", labelsize=6)
    neighbours = grid[:, 1].subgridspec(len(queries), k + 1, wspace=0.05, hspace=0.35)
    for i, query in enumerate(queries):
        _show(figure.add_subplot(neighbours[i, 0]), query, f"test: {short_label(class_names[query_labels[i]], 14)}",
              "tab:red")
        for j in range(k):
            same = near_labels[i, j] == query_labels[i]
            _show(figure.add_subplot(neighbours[i, j + 1]), near[i, j],
                  short_label(class_names[near_labels[i, j]], 14), "black" if same else "tab:gray")
    figure.suptitle("Left: top-5 probabilities (red, *: the true class). Right: test images (red title) and their "
                    f"{k} nearest training images by the 4096-d output of fc2 (grey title: another class)"
                    + (f"\n{note}" if note else ""), fontsize=9, y=0.99)
    return figure


def gradcam_figure(images, overlays, true, predicted, class_names, columns=4):
    """gradcam.png: each image beside its Grad-CAM overlay, titled with its true and predicted class (green:
    right, red: wrong)."""
    from matplotlib.figure import Figure

    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(4.8 * columns, 2.5 * rows + 0.4))
    for i, (image, picture) in enumerate(zip(images, overlays)):
        right = true[i] == predicted[i]
        title = f"true {short_label(class_names[true[i]], 12)}\npredicted {short_label(class_names[predicted[i]], 12)}"
        _show(figure.add_subplot(rows, columns * 2, 2 * i + 1), image, title, "tab:green" if right else "tab:red")
        _show(figure.add_subplot(rows, columns * 2, 2 * i + 2), picture, "evidence for the prediction", "black")
    figure.suptitle("Where the evidence for the predicted class lies: gradient x activation of the last convolution "
                    "(HiResCAM, Grad-CAM's position-by-position form)", fontsize=10)
    return figure
