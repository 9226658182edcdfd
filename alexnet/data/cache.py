"""The cache folder: decoded image folders (checked against their checksums) and extracted archives.

Decoded folders are cached as `.npy` files keyed by the files' names, sizes
and modification times; extracted archives by the archive's path, size and
modification time.
"""

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from alexnet.data.dataset import Dataset
from alexnet.errors import UsageError

log = logging.getLogger(__name__)

_CACHE_FORMAT = 2  # bump when the cached arrays or META change meaning
META = "meta.json"  # in each cache folder: its key, and each array's shape, dtype and SHA-256
_CACHED_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def cache_dir():
    """Returns the folder for decoded datasets and extracted archives ($ALEXNET_CACHE_DIR or ~/.cache/alexnet).

    Raises:
        UsageError: If $ALEXNET_CACHE_DIR names something that is not a folder.
    """
    if os.environ.get("ALEXNET_CACHE_DIR"):
        folder = Path(os.environ["ALEXNET_CACHE_DIR"]).expanduser()
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"ALEXNET_CACHE_DIR={folder} is a file, not a folder; point it at a folder "
                             "(it is created if missing) or unset it to use ~/.cache/alexnet")
        return folder
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alexnet"


_warned_unwritable = set()


def writable_cache_dir():
    """The cache folder if it can be written (created if missing), else None after one warning."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-")
        probe.close()
        return folder
    except OSError as error:
        if str(folder) not in _warned_unwritable:
            _warned_unwritable.add(str(folder))
            log.warning(f"cannot write the cache folder {folder} ({type(error).__name__}: {error.strerror}); "
                        "working in memory and without a cache (set ALEXNET_CACHE_DIR to a writable folder to keep "
                        "decoded images between runs)")
        return None


def _folder_key(files, storage_size):
    """The cache key of an image folder: the format, the storage size as asked, each file's path, size and mtime."""
    digest = hashlib.sha256(f"v{_CACHE_FORMAT} size={storage_size or 'auto'}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"\n{path}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _archive_key(path):
    """The cache key of an archive: its resolved path, size and modification time."""
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}".encode()).hexdigest()[:24]


def read_cached(folder, key, names):
    """(arrays, meta) of a cache folder that `_write_cache` wrote under `key`: the one reader of its META.

    META holds the key and each array's shape, dtype and SHA-256, so a truncated,
    edited or foreign file is caught, not used.

    Raises:
        OSError, ValueError, KeyError, TypeError, AttributeError (`DAMAGED`): for a damaged or foreign folder.
    """
    meta = json.loads((folder / META).read_text())
    if meta.get("key") != key:
        raise ValueError("it belongs to other files")
    arrays = {}
    for name in names:
        expected = meta["arrays"][name]
        data = (folder / f"{name}.npy").read_bytes()
        if hashlib.sha256(data).hexdigest() != expected["sha256"]:
            raise ValueError(f"{name}.npy does not match its checksum")
        array = np.load(io.BytesIO(data), allow_pickle=False)
        if list(array.shape) != expected["shape"] or str(array.dtype) != expected["dtype"]:
            raise ValueError(f"{name}.npy has shape {array.shape}, expected {expected['shape']}")
        arrays[name] = array
    return arrays, meta


DAMAGED = (OSError, ValueError, KeyError, TypeError, AttributeError)  # what read_cached raises for a bad folder


def discard_damaged(folder, what, error, instead):
    """Says that a cache folder is damaged and what happens instead, and removes it so no run meets it again."""
    log.warning(f"the {what} {folder} is damaged ({error}); {instead}")
    shutil.rmtree(folder, ignore_errors=True)


def _read_cache(folder, key, class_names, root):
    """The decoded images of a cache folder; None (after one line) if it is damaged or of other classes."""
    try:
        arrays, meta = read_cached(folder, key, _CACHED_ARRAYS)
        if meta.get("class_names") != class_names:
            raise ValueError("it belongs to other files")
        if len(arrays["x_train"]) != len(arrays["y_train"]) or len(arrays["x_test"]) != len(arrays["y_test"]):
            raise ValueError("images and labels differ in number")
    except DAMAGED as error:
        discard_damaged(folder, "decoded-image cache", error, "decoding the images again")
        return None
    return Dataset(**arrays, class_names=meta["class_names"], source=str(root), skipped=meta.get("skipped", []))


def _write_cache(folder, arrays, meta):
    """Writes the cache folder under a temporary name and renames it, so a crash leaves no half cache.

    Two processes may decode the same folder at once: the first rename wins and
    the other's copy is dropped (both hold the same arrays).
    """
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
        meta = {**meta, "arrays": {}}
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            (tmp / f"{name}.npy").write_bytes(buffer.getvalue())
            meta["arrays"][name] = {"shape": list(array.shape), "dtype": str(array.dtype),
                                    "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()}
        (tmp / META).write_text(json.dumps(meta))
        _rename_unless_present(tmp, folder)
    except OSError as error:
        log.warning(f"could not cache {folder.name} in {folder.parent} ({error})")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _rename_unless_present(tmp, target):
    """Renames the folder tmp to target; if another process put target in place first, keeps theirs."""
    try:
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():  # not a lost race: a real error
            raise
