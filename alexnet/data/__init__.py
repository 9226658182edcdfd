"""Data sources: CIFAR-10 from Keras, image folders, CIFAR batch folders and archives; and their splits.

Every source gives the same thing, a `Dataset` of in-memory uint8 arrays:
images (N, H, W, C) and int64 labels (N,) for the train and test parts, plus
the class names in label order; an image folder too large for memory gives a
`FileIndex` of its files in place of the image arrays, to stream. Decoding image
files is slow, so decoded folders are cached as `.npy` files keyed by the
files' names, sizes and modification times.

- `dataset.py`: the `Dataset` every source gives.
- one module per source: `keras_cifar.py`, `cifar_batches.py`, `image_folder.py` (with `layouts.py`: where
  a folder keeps its parts and labels), `archives.py`;
- shared concerns: `images.py` (decoding one file), `cache.py` (the cache folder), `index.py` (a streamed
  folder's `FileIndex`);
- `splits.py`: the train / validation / test splits of a dataset, seeded, disjoint and checked.

May import: `alexnet.settings` (the recipes' crop, for splits). Keras is imported only inside the functions
that need it (`keras.datasets`).
"""

from pathlib import Path

from alexnet import console
from alexnet.data.archives import ARCHIVE_SUFFIXES, _dataset_root, extract_archive
from alexnet.data.cache import cache_dir, writable_cache_dir
from alexnet.data.cifar_batches import (CIFAR10_CLASSES, _find_cifar_batches, read_cifar_batch, read_cifar_batches,
                                        safe_unpickle)
from alexnet.data.dataset import Dataset
from alexnet.data.image_folder import MAX_STORED_SIDE, load_image_folder
from alexnet.data.images import _resized, decode_image
from alexnet.data.index import FileIndex
from alexnet.data.keras_cifar import load_keras_cifar10
from alexnet.data.layouts import IMAGE_EXTENSIONS
from alexnet.errors import UsageError

__all__ = ["ARCHIVE_SUFFIXES", "CIFAR10_CLASSES", "IMAGE_EXTENSIONS", "MAX_STORED_SIDE", "Dataset", "cache_dir",
           "FileIndex", "decode_image", "extract_archive", "load_dataset", "load_image_folder", "load_keras_cifar10",
           "read_cifar_batch", "read_cifar_batches", "safe_unpickle", "writable_cache_dir"]


def load_dataset(data="cifar10", storage_size=None, strict=False, test_only=False, stream=None, crops=False):
    """Loads a dataset by the CLI's `--data` value.

    Args:
        data: "cifar10" (Keras's download), or the path of an image folder
            (`train/<class>/*`, `test/<class>/*`), of a `cifar-10-batches-py`
            folder, or of an archive of either (ARCHIVE_SUFFIXES).
        storage_size: (height, width) to store images at; None keeps the
            source's own size (for folders: the most common size in it).
        strict: Fail on unreadable image files instead of skipping them.
        test_only: Only the test part is needed (evaluation): an image folder
            may then lack train/, and its training arrays are empty.
        stream: image folders only: True indexes the files to stream them from
            disk (`data.index.FileIndex` in place of the arrays), False decodes
            them into memory; None streams a folder that would not fit in memory.
        crops: the recipe crops each file in the pipeline (random-resized): with stream=None, image folders
            stream, since the crops need the original files.

    Returns:
        A `Dataset`.

    Raises:
        UsageError: If the path does not hold a dataset this function reads.
        AlexnetError: If the data cannot be read or downloaded.
    """
    console.ensure_setup()
    if data == "cifar10":
        _in_memory_only(stream, "keras.datasets' CIFAR-10")
        dataset = load_keras_cifar10()
    else:
        path = Path(data).expanduser()
        if not path.exists():
            raise UsageError(f"--data: no such file or folder: {data}. Give 'cifar10' or an image folder, "
                             "a cifar-10-batches-py folder or an archive of one.")
        if path.is_file():
            if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
                raise UsageError(f"--data: {data} is a file but not an archive ({', '.join(ARCHIVE_SUFFIXES)}).")
            path = extract_archive(path)
        path = _dataset_root(path)
        batches = _find_cifar_batches(path)
        if batches is None:
            return load_image_folder(path, storage_size=storage_size, strict=strict, test_only=test_only,
                                     stream=True if stream is None and crops else stream)
        _in_memory_only(stream, f"the CIFAR batches in {batches}")
        dataset = read_cifar_batches(batches)
    if storage_size is not None and tuple(storage_size) != dataset.x_train.shape[1:3]:
        dataset = _resized(dataset, storage_size)
    return dataset


def _in_memory_only(stream, what):
    if stream:
        raise UsageError(f"--stream: {what} is read into memory whole (it is small); only image folders stream")
