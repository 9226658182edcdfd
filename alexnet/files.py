"""Files written so that a crash leaves the old one or the new one, never a torn one.

A write that the operating system refuses (disk full, permission denied, a file where a folder should be) is
an `AlexnetError` that names the file being written and why, not a bare OSError without a path.
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

from alexnet.errors import AlexnetError, UsageError


@contextlib.contextmanager
def writing(path, what="write"):
    """Turns an OSError inside the block into an AlexnetError naming `path` (exit status 1)."""
    try:
        yield
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):  # the path is wrong, not the disk
            raise UsageError(f"cannot {what} {path}: {error.strerror or error}") from error
        hint = " (free some space, or write elsewhere)" if error.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise AlexnetError(f"cannot {what} {path}: {error.strerror or error}{hint}") from error


def write_atomic(path, data):
    """Writes text or bytes to a temporary file beside `path`, then renames it over `path`.

    A crash leaves either the old file or the new one, never a truncated one.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: the folder {path.parent} does not exist")
    mode = "wb" if isinstance(data, bytes) else "w"
    with writing(path):
        _write_atomic(path, data, mode)


def _write_atomic(path, data, mode):
    tmp = atomic_target(path)
    try:
        with open(tmp, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_target(path):
    """The temporary path beside `path` that a write goes to before its rename: the one namer of them all.

    Hidden, with ".tmp" and the process id in its name, and `path`'s suffix last (Keras's savers want it):
    `RunFolder.remove_stale_temporaries` finds what a killed process left, and two processes never share one.
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def copy_atomic(source, path):
    """Copies the file `source` to `path` through a temporary file and a rename."""
    tmp = atomic_target(path)
    try:
        with writing(path, "copy to"):
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_model_atomic(model, path):
    """Saves a Keras model to a temporary file beside `path` and renames it into place."""
    tmp = atomic_target(path)
    try:
        with writing(path, "save the model to"):
            model.save(tmp)
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def sha256_of(path):
    """The sha256 (hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
