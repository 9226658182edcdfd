"""Run folders: where a run's files go, how they are written, what is recorded about the machine."""

import csv
import datetime
import json
import os
import platform
import re
import shutil
import tempfile
from pathlib import Path

from alexnet.errors import UsageError

RUN_MARKER = "config.json"  # a folder holding this file holds a run
HISTORY = "history.csv"  # one row an epoch (callbacks.EpochLog writes it)
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"  # in CHECKPOINT_DIR: epochs completed and the best validation accuracy so far
_CHECKPOINT = re.compile(r"^epoch-(\d+)\.keras$")
# Everything a run writes in its folder; --overwrite removes these and nothing else.
RUN_ENTRIES = ("config.json", "history.csv", "logs", "checkpoints", "model.keras", "best.keras", "metrics.json",
               "samples.png", "curves.png", "report.json", "report.md", "confusion.png", "mistakes.png",
               "evaluation", "export")
RUN_ENTRY_PATTERNS = ("evaluation-*",)  # `alexnet evaluate RUN --data OTHER` writes evaluation-<data name>/


LOCK_FILE = ".lock"  # held (flock) by the process that trains in the folder, for the run's life
_held_locks = {}  # folder -> open lock file, kept open until released or the process ends


def lock_run_dir(path):
    """Claims the run folder for this process, or raises UsageError if another process holds it.

    An advisory lock (flock) on `.lock`: the operating system drops it when the
    process ends, however it ends, so a kill -9 never leaves a stale claim.
    """
    path = Path(path)
    if str(path.resolve()) in _held_locks:
        return
    try:
        import fcntl
    except ImportError:  # not on POSIX: no locking, as before
        return
    handle = open(path / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UsageError(f"{path} is in use by another alexnet process (it holds {path / LOCK_FILE}); "
                         "wait for it to finish, or choose another --run-dir") from None
    _held_locks[str(path.resolve())] = handle


def unlock_run_dir(path):
    handle = _held_locks.pop(str(Path(path).resolve()), None)
    if handle is not None:
        handle.close()


def remove_run_entries(path):
    """Removes what a run wrote in its folder (RUN_ENTRIES, RUN_ENTRY_PATTERNS), and nothing else."""
    named = [Path(path) / name for name in RUN_ENTRIES]
    for entry in named + [e for pattern in RUN_ENTRY_PATTERNS for e in sorted(Path(path).glob(pattern))]:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def remove_stale_temporaries(path):
    """Deletes temporary files that a killed process left in a run folder (call with the folder locked).

    They are hidden files with ".tmp" in their names (write_atomic and
    atomic_target make them); holding the folder's lock means that no live
    process of ours is writing them.
    """
    removed = []
    for tmp in Path(path).rglob(".*"):
        if ".tmp" in tmp.name and tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


def new_run_dir(run_dir, model, overwrite=False, root="runs"):
    """Creates, locks and returns the run's folder: `run_dir`, or runs/<timestamp>-<model>.

    Raises:
        UsageError: If `run_dir` already holds a run and overwrite is False, or
            another process is using it.
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
    path.mkdir(parents=True, exist_ok=True)
    lock_run_dir(path)  # before looking for a run, so that two processes cannot both find none
    if (path / RUN_MARKER).exists():
        if not overwrite:
            unlock_run_dir(path)
            raise UsageError(f"--run-dir {run_dir} already holds a run; choose another folder, "
                             f"continue it with --resume {run_dir}, or pass --overwrite to replace it")
        remove_run_entries(path)
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


def save_model_atomic(model, path):
    """Saves a Keras model to a temporary file beside `path` and renames it into place."""
    tmp = atomic_target(path)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_target(path):
    """Returns a temporary path beside `path` with the same suffix, for writers that need a file name."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


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


def checkpoints(run_dir):
    """Returns [(epochs completed, path)] of the complete checkpoints in run_dir, newest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [(int(m.group(1)), folder / m.group(0))
             for m in (_CHECKPOINT.match(p.name) for p in folder.glob("epoch-*.keras")) if m]
    return sorted(found, reverse=True)


def latest_checkpoint(run_dir):
    """Returns (epochs completed, path) of the newest complete checkpoint, or (0, None)."""
    found = checkpoints(run_dir)
    return found[0] if found else (0, None)


def read_state(run_dir):
    """checkpoints/state.json: {"epochs": completed, "best_val_accuracy": ...}, or {} if absent or unreadable."""
    try:
        state = json.loads((Path(run_dir) / CHECKPOINT_DIR / STATE_FILE).read_text())
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def read_history(run_dir):
    """history.csv as a list of {column: float} rows, one an epoch; [] if absent. Unreadable cells are NaN."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            values = {}
            for key, value in row.items():
                try:
                    values[key] = float(value)
                except (TypeError, ValueError):
                    values[key] = float("nan")
            rows.append(values)
    return rows


def git_commit():
    """The commit of the checkout this package runs from (with "-dirty" for local changes), or None."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        return subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment():
    """Library versions, the Keras backend and the devices it sees, for config.json."""
    import keras
    import numpy

    from alexnet import __version__

    info = {
        "alexnet": __version__,
        "git_commit": git_commit(),
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
