"""Run folders: where a run's files go, how they are written, what is recorded about the machine."""

import datetime
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

from alexnet.errors import UsageError

RUN_MARKER = "config.json"  # a folder holding this file holds a run
# Everything a run writes in its folder; --overwrite removes these and nothing else.
RUN_ENTRIES = ("config.json", "history.csv", "logs", "checkpoints", "model.keras", "best.keras", "metrics.json",
               "samples.png", "curves.png", "report.json", "report.md", "confusion.png", "mistakes.png",
               "evaluation")


def new_run_dir(run_dir, model, overwrite=False, root="runs"):
    """Creates and returns the run's folder: `run_dir`, or runs/<timestamp>-<model>.

    Raises:
        UsageError: If `run_dir` already holds a run and overwrite is False.
    """
    if run_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{stamp}-{model}"
        suffix = 1
        while path.exists():  # two runs started in the same second
            suffix += 1
            path = Path(root) / f"{stamp}-{model}-{suffix}"
    else:
        path = Path(run_dir).expanduser()
        if path.exists() and not path.is_dir():
            raise UsageError(f"--run-dir {run_dir} is a file, not a folder")
        if (path / RUN_MARKER).exists():
            if not overwrite:
                raise UsageError(f"--run-dir {run_dir} already holds a run; choose another folder, "
                                 f"continue it with --resume {run_dir}, or pass --overwrite to replace it")
            for name in RUN_ENTRIES:
                entry = path / name
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path, data):
    """Writes text or bytes to a temporary file beside `path`, then renames it over `path`.

    A crash leaves either the old file or the new one, never a truncated one.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: the folder {path.parent} does not exist")
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual mode
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_target(path):
    """Returns a temporary path beside `path` with the same suffix, for writers that need a file name."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def read_json(path):
    return json.loads(Path(path).read_text())


def read_run_config(run_dir, purpose="used as a run"):
    """The run folder's config.json (settings, data, recipe, ...), the one reader of it.

    Raises:
        UsageError: If the folder holds no config.json, or one that is not a
            run's (truncated, edited, foreign), naming the file.
    """
    path = Path(run_dir) / RUN_MARKER
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a run folder (no {RUN_MARKER})")
    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict) or not isinstance(stored.get("settings"), dict):
            raise ValueError("no 'settings' object")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"{path} is damaged ({type(error).__name__}: {error}); the run cannot be {purpose}") \
            from None
    return stored


def environment():
    """Library versions, the Keras backend and the devices it sees, for config.json."""
    import keras
    import numpy

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "backend": keras.backend.backend(),
    }
    from alexnet.backend import tensorflow

    tf = tensorflow()
    if tf is not None:
        info["tensorflow"] = tf.__version__
    backend = info["backend"]
    if backend == "tensorflow":
        info["devices"] = [d.name for d in tf.config.list_logical_devices()]
    elif backend == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [str(d) for d in jax.devices()]
    elif backend == "torch":
        import torch

        info["torch"] = torch.__version__
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or ["cpu"]
    return info
