"""The official `cifar-10-batches-py` folder: pickled batches, read without running code."""

import pickle
from pathlib import Path

import numpy as np

from alexnet.data.dataset import Dataset
from alexnet.errors import AlexnetError, UsageError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers, bytes and numpy arrays only.

    A pickle can name any Python callable and have it run at load time; the
    CIFAR batches need none but numpy's array and dtype reconstructors, so
    every other global is refused before anything is called.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol 2 stores bytes
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"refused to load {module}.{name}: only plain data and numpy arrays are allowed")


def safe_unpickle(path):
    """Reads a pickle file that may hold only plain containers, bytes and numpy arrays.

    Raises:
        AlexnetError: If the file is truncated, corrupt or names anything else.
    """
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="bytes").load()
    except _RefusedGlobal as error:
        raise AlexnetError(f"{path}: {error}") from error
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as error:
        raise AlexnetError(f"{path}: truncated or corrupt pickle ({type(error).__name__}: {error})") from error


def _str_keys(obj, path):
    if not isinstance(obj, dict):
        raise AlexnetError(f"{path}: expected a dict in the CIFAR batch, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _find_cifar_batches(path):
    for folder in (path, path / "cifar-10-batches-py"):
        if (folder / "data_batch_1").is_file():
            return folder
    return None


def read_cifar_batch(path, num_classes=10):
    """Reads one CIFAR-10 batch file into uint8 images (N, 32, 32, 3) and int64 labels (N,)."""
    batch = _str_keys(safe_unpickle(path), path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels is None:
        raise AlexnetError(f"{path}: not a CIFAR-10 batch (expected 'data' of shape (N, 3072) and 'labels')")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise AlexnetError(f"{path}: labels must be integers 0..{num_classes - 1}; found "
                           f"{type(labels[0]).__name__ if len(labels) else 'none'} values") from None
    if not np.issubdtype(data.dtype, np.integer) and not np.issubdtype(data.dtype, np.floating):
        raise AlexnetError(f"{path}: pixel data of type {data.dtype}; expected integers 0..255")
    if data.size and (data.min() < 0 or data.max() > 255 or
                      (np.issubdtype(data.dtype, np.floating) and not np.array_equal(data, np.rint(data)))):
        raise AlexnetError(f"{path}: pixel values must be whole numbers 0..255; found {data.min()}..{data.max()}")
    if len(labels) != len(data):
        raise AlexnetError(f"{path}: {len(data)} images but {len(labels)} labels")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise AlexnetError(f"{path}: labels out of range 0..{num_classes - 1}: {sorted(set(bad.tolist()))[:5]}")
    images = data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), labels


def read_cifar_batches(folder):
    """Reads the official `cifar-10-batches-py` folder (data_batch_1..5, test_batch, batches.meta)."""
    folder = Path(folder)
    class_names = list(CIFAR10_CLASSES)
    if (folder / "batches.meta").is_file():
        meta = _str_keys(safe_unpickle(folder / "batches.meta"), folder / "batches.meta")
        names = meta.get("label_names")
        if names:
            class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    train_files = sorted(folder.glob("data_batch_*"), key=lambda p: p.name)
    if not (folder / "test_batch").is_file():
        raise UsageError(f"--data: {folder} has data_batch_* files but no test_batch")
    parts = [read_cifar_batch(p, len(class_names)) for p in train_files]
    x_test, y_test = read_cifar_batch(folder / "test_batch", len(class_names))
    return Dataset(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                   x_test, y_test, class_names, source=str(folder))

