"""A streamed image folder's index: every file's path and label, listed once and cached, never decoded up front.

A `FileIndex` stands where an in-memory source has its uint8 image array: it
has a length, a `shape` (N, H, W, 3) at the storage size, and rows can be taken
with an index array (`index[rows]`), so the splits work on it unchanged. Its
memory is the index alone: about 40 bytes an image (the relative path and
the label), whatever the images' size.
"""

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from alexnet.data.cache import DAMAGED, _write_cache, discard_damaged, read_cached, writable_cache_dir
from alexnet.files import write_atomic

log = logging.getLogger(__name__)

_INDEX_FORMAT = 2  # bump when the cached index changes meaning


@dataclasses.dataclass(frozen=True, eq=False)
class FileIndex:
    """Image files of one part of a folder: paths relative to `root`, and where each one is in the source."""

    root: Path
    paths: np.ndarray  # (N,) bytes (os.fsencode), relative to root
    size: tuple  # (height, width) the pipeline stores images at when it does not crop them

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, rows):
        return dataclasses.replace(self, paths=self.paths[rows])

    @property
    def shape(self):
        """What an array of the decoded images would have: (N, height, width, 3)."""
        return (len(self), *self.size, 3)

    @property
    def nbytes(self):
        """The index's memory (the paths; labels live beside it, in the splits)."""
        return int(self.paths.nbytes)

    def path(self, row):
        return self.root / os.fsdecode(self.paths[row])

    def full_paths(self):
        """Absolute paths as bytes, for readers that take strings (tf.data)."""
        prefix = os.fsencode(str(self.root)) + b"/"
        return np.char.add(prefix, self.paths)


def index_key(layout, storage_size):
    """A key that changes when a class folder gains, loses or renames a file (its modification time changes).

    Cheap: it reads the class folders' times (and those of the part folders and
    label files), not each file's, so a cached index of a million files is
    found without listing them.
    """
    root = Path(layout.root)
    digest = hashlib.sha256(f"index v{_INDEX_FORMAT} {root.resolve()} size={storage_size or 'auto'}".encode())
    for path in layout.label_files:
        digest.update(f"\n{path.name}\t{path.stat().st_mtime_ns}".encode())
    for part in layout.parts:
        folder = root / part
        if not folder.is_dir():
            continue
        digest.update(f"\n{part}\t{folder.stat().st_mtime_ns}".encode())  # a flat folder's files
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith("."):
                digest.update(f"\n{part}/{entry.name}\t{entry.stat().st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def save_index(key, arrays, meta):
    """Caches an index (arrays of paths and labels, and its meta) under the key; a no-op without a cache.

    Each root keeps a pointer to its newest index: a folder listed again (its
    files changed) is compared with its last listing, and files that are gone
    since are counted in one warning, rather than left out in silence.
    """
    cache = writable_cache_dir()
    if cache is None:
        return
    pointer = cache / f"index-latest-{_root_key(meta['root'], meta['size'])}.json"
    try:
        previous = json.loads(pointer.read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        previous = None
    _write_cache(cache / f"index-{key}", arrays, {**meta, "key": key})
    if previous and previous != key:
        _say_what_is_gone(previous, arrays["paths"], meta["root"])
    with contextlib.suppress(OSError):
        write_atomic(pointer, json.dumps({"key": key}))


def _root_key(root, size):
    return hashlib.sha256(f"{Path(root).resolve()} {list(size)}".encode()).hexdigest()[:24]


def _say_what_is_gone(previous_key, paths, root):
    found = load_index(previous_key, ("paths",))
    if found is None:
        return
    gone = len(set(found[0]["paths"].tolist()) - set(np.asarray(paths).tolist()))
    if gone:
        log.warning(f"{gone} file(s) of {root} are gone since it was last listed (deleted or renamed): the run "
                    "goes on without them")


def load_index(key, names):
    """(arrays, meta) of a cached index, or None if there is none or it is damaged (then removed)."""
    cache = writable_cache_dir()
    folder = cache / f"index-{key}" if cache is not None else None
    if folder is None or not folder.is_dir():
        return None
    try:
        arrays, meta = read_cached(folder, key, names)
    except DAMAGED as error:
        discard_damaged(folder, "cached file index", error, "listing the files again")
        return None
    return arrays, meta
