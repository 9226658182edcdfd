"""Builders of small datasets on disk for the tests of alexnet.data: image folders and CIFAR batch folders."""

import pickle

import numpy as np
from PIL import Image

from alexnet.data import CIFAR10_CLASSES


def save_image(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


def make_image_folder(root, classes=("cat", "dog"), per_class=3, size=(8, 8)):
    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        for name in classes:
            for i in range(per_class):
                save_image(root / part / name / f"{i}.png", rng.integers(0, 256, size=(*size, 3), dtype=np.uint8))
    return root


def write_batches(folder, n=20, protocol=2, labels=None):
    rng = np.random.default_rng(4)
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = list(rng.integers(0, 10, size=n)) if labels is None else labels
    batch = {b"batch_label": b"training batch 1 of 1", b"labels": [int(v) for v in labels], b"data": images,
             b"filenames": [f"{i}.png".encode() for i in range(n)]}
    for name in ("data_batch_1", "test_batch"):
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, f, protocol=protocol)
    return images, labels
