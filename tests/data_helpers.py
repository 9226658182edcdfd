"""Builders of small datasets on disk for the tests of alexnet.data: image folders and CIFAR batch folders."""

import pickle
import struct
import zlib

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


def write_png_bomb(path, side=20000):
    """A PNG of a few hundred bytes whose header claims side x side pixels (a decompression bomb: 400 million
    pixels, 1.2 GB decoded); its image data is a stub, so only a reader that trusts the header would allocate."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
                     + chunk(b"IEND", b""))
    return path
