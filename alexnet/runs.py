"""Run folders: `RunFolder`, the one home of a run's file names, their readers and writers, and the lock.

    runs/20261127-213000-alexnet/
        config.json      settings (resolved), data, recipe, distribution, speed, environment
        history.csv      one row an epoch          logs/          TensorBoard: train, validation, test
        checkpoints/     epoch-NNNN.keras (the two newest), epoch-NNNN-step-SSSSSSS.keras (mid-epoch, the newest),
                         each with its .json (random-generator states; mid-epoch: the epoch's metric sums), state.json,
                         best-NNNN.keras (the best model as of epoch NNNN, the two newest)
        best.keras       best by validation accuracy (a link to its best-NNNN.keras)   model.keras   the final model
        metrics.json     test figures          report.json, report.md, confusion.png, mistakes.png
        samples.png, curves.png, evaluation/, evaluation-<data>/, export/

Nothing else in the package spells these names.
"""

import csv
import datetime
import json
import logging
import re
import shutil
from pathlib import Path

from alexnet import console
from alexnet.errors import UsageError
from alexnet.files import write_json

log = logging.getLogger(__name__)

# What write_report puts in the folder it is given (the run folder, or an evaluation folder).
REPORT_JSON, REPORT_MD, CONFUSION_PNG, MISTAKES_PNG = "report.json", "report.md", "confusion.png", "mistakes.png"
_CHECKPOINT = re.compile(r"^epoch-(\d+)\.keras$")
_STEP_CHECKPOINT = re.compile(r"^epoch-(\d+)-step-(\d+)\.keras$")
_BEST_CHECKPOINT = re.compile(r"^best-(\d+)\.keras$")
_held_locks = {}  # folder -> open lock file, kept open until released or the process ends


class RunFolder:
    """A run's folder: where each file goes, how it is read and written, and who may write (the lock)."""

    CONFIG = "config.json"  # a folder holding this file holds a run
    HISTORY = "history.csv"  # one row an epoch (callbacks.EpochLog writes it)
    CHECKPOINTS = "checkpoints"
    STATE = "state.json"  # in CHECKPOINTS: epochs completed and the best validation accuracy so far
    BEST = "best.keras"
    FINAL = "model.keras"
    METRICS = "metrics.json"
    LOGS = "logs"
    SAMPLES = "samples.png"
    CURVES = "curves.png"
    EVALUATION = "evaluation"  # `alexnet evaluate RUN` on the run's own test split
    EXPORT = "export"
    INSPECT = "inspect"  # `alexnet inspect RUN`: filters.png, neighbours.png, gradcam.png
    LOCK = ".lock"  # held (flock) by the process that trains in the folder, for the run's life
    # Everything a run writes in its folder; --overwrite removes these and nothing else.
    ENTRIES = (CONFIG, HISTORY, LOGS, CHECKPOINTS, FINAL, BEST, METRICS, SAMPLES, CURVES, REPORT_JSON, REPORT_MD,
               CONFUSION_PNG, MISTAKES_PNG, EVALUATION, EXPORT, INSPECT)
    ENTRY_PATTERNS = (f"{EVALUATION}-*",)  # evaluation on other data or another sample

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"RunFolder({str(self.path)!r})"

    def __str__(self):
        return str(self.path)

    def __fspath__(self):
        return str(self.path)

    def __eq__(self, other):
        return isinstance(other, RunFolder) and self.path.resolve() == other.path.resolve()

    def __hash__(self):
        return hash(self.path.resolve())

    # --- where each file goes -------------------------------------------------------------

    config_file = property(lambda self: self.path / self.CONFIG)
    history_file = property(lambda self: self.path / self.HISTORY)
    checkpoint_dir = property(lambda self: self.path / self.CHECKPOINTS)
    state_file = property(lambda self: self.path / self.CHECKPOINTS / self.STATE)
    best_model = property(lambda self: self.path / self.BEST)
    final_model = property(lambda self: self.path / self.FINAL)
    metrics_file = property(lambda self: self.path / self.METRICS)
    samples_file = property(lambda self: self.path / self.SAMPLES)
    curves_file = property(lambda self: self.path / self.CURVES)
    export_dir = property(lambda self: self.path / self.EXPORT)

    def log_dir(self, part=None):
        """logs/, or its TensorBoard part: "train", "validation" or "test"."""
        return self.path / self.LOGS if part is None else self.path / self.LOGS / part

    def checkpoint_file(self, epochs_done, steps_done=0):
        """The checkpoint after `epochs_done` epochs and, mid-epoch, `steps_done` steps of the next one."""
        step = f"-step-{steps_done:07d}" if steps_done else ""
        return self.checkpoint_dir / f"epoch-{epochs_done:04d}{step}.keras"

    def best_checkpoint(self, epoch):
        """The best model as of `epoch` (counted from 1), which best.keras links to once a checkpoint commits it."""
        return self.checkpoint_dir / f"best-{epoch:04d}.keras"

    def best_checkpoints(self):
        """[(epoch, path)] of the best models kept in checkpoints/, newest first."""
        found = [(int(m.group(1)), self.checkpoint_dir / m.group(0))
                 for m in (_BEST_CHECKPOINT.match(p.name) for p in self.checkpoint_dir.glob("best-*.keras")) if m]
        return sorted(found, reverse=True)

    @staticmethod
    def sidecar(checkpoint):
        """The JSON file written beside a checkpoint: what `model.save` leaves out (see callbacks.save_checkpoint)."""
        return checkpoint.with_suffix(".json")

    def evaluation_dir(self, data_name=None, limit=None):
        """evaluation/ for the run's own test split; evaluation-<data name>[-<N>]/ for other data or samples."""
        if data_name is None and limit is None:
            return self.path / self.EVALUATION
        return self.path / "-".join([self.EVALUATION, data_name or "own"] + ([str(limit)] if limit else []))

    def is_run(self):
        return self.config_file.is_file()

    # --- readers and writers ---------------------------------------------------------------

    def read_config(self, purpose="used as a run"):
        """config.json (settings, data, recipe, ...), the one reader of it.

        Raises:
            UsageError: If the folder holds no config.json, or one that is not a
                run's (truncated, edited, foreign), naming the file.
        """
        if not self.is_run():
            raise UsageError(f"{self.path} is not a run folder (no {self.CONFIG})")
        try:
            stored = json.loads(self.config_file.read_text())
            if not isinstance(stored, dict) or not isinstance(stored.get("settings"), dict):
                raise ValueError("no 'settings' object")
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise UsageError(f"{self.config_file} is damaged ({type(error).__name__}: {error}); the run cannot "
                             f"be {purpose}") from None
        return stored

    def settings(self, purpose="used as a run"):
        """The run's TrainConfig, from config.json."""
        from alexnet.settings.config import TrainConfig  # config reads recipes; runs is imported by everything

        return TrainConfig.from_dict(self.read_config(purpose)["settings"])

    def write_config(self, stored):
        write_json(self.config_file, stored)

    def read_history(self):
        """history.csv as a list of {column: float} rows, one an epoch; [] if absent. Unreadable cells are NaN."""
        if not self.history_file.is_file():
            return []
        rows = []
        with open(self.history_file, newline="") as f:
            for row in csv.DictReader(f):
                values = {}
                for key, value in row.items():
                    try:
                        values[key] = float(value)
                    except (TypeError, ValueError):
                        values[key] = float("nan")
                rows.append(values)
        return rows

    def checkpoints(self):
        """[(epochs completed, path)] of the complete checkpoints, newest first."""
        found = [(int(m.group(1)), self.checkpoint_dir / m.group(0))
                 for m in (_CHECKPOINT.match(p.name) for p in self.checkpoint_dir.glob("epoch-*.keras")) if m]
        return sorted(found, reverse=True)

    def step_checkpoints(self):
        """[((epochs completed, steps of the next), path)] of the complete mid-epoch checkpoints, newest first."""
        found = [((int(m.group(1)), int(m.group(2))), self.checkpoint_dir / m.group(0))
                 for m in (_STEP_CHECKPOINT.match(p.name) for p in self.checkpoint_dir.glob("epoch-*.keras")) if m]
        return sorted(found, reverse=True)

    def step_files(self):
        """Every file of the mid-epoch checkpoints (.keras and .json), complete or not."""
        return [p for p in self.checkpoint_dir.glob("epoch-*-step-*") if not p.name.startswith(".")]

    def positions(self):
        """[((epochs completed, steps of the next), path)] of every complete checkpoint, newest first."""
        return sorted([((epoch, 0), path) for epoch, path in self.checkpoints()] + self.step_checkpoints(),
                      reverse=True)

    def latest_checkpoint(self):
        """(epochs completed, path) of the newest complete checkpoint, or (0, None)."""
        found = self.checkpoints()
        return found[0] if found else (0, None)

    def damaged_checkpoints(self):
        return sorted(p.name for p in self.checkpoint_dir.glob("*.damaged"))

    def read_state(self):
        """checkpoints/state.json: {"epochs": completed, "best_val_accuracy", "best_epoch"}, or {} if absent or
        unreadable (best_epoch: the epoch, counted from 1, whose model best.keras holds; None for none)."""
        try:
            state = json.loads(self.state_file.read_text())
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def write_state(self, epochs, best_val_accuracy, best_epoch=None):
        write_json(self.state_file,
                   {"epochs": epochs, "best_val_accuracy": best_val_accuracy, "best_epoch": best_epoch})

    def read_metrics(self):
        return json.loads(self.metrics_file.read_text())

    def write_metrics(self, metrics):
        write_json(self.metrics_file, metrics)

    def model_file(self):
        """The run's final model; for a run that did not finish, its best model or newest checkpoint, with a note.

        Raises:
            UsageError: If the run holds no model yet.
        """
        if self.final_model.is_file():
            return self.final_model
        _, checkpoint = self.latest_checkpoint()
        for fallback, what in ((self.best_model, "its best model by validation accuracy"),
                               (checkpoint, "its newest checkpoint")):
            if fallback is not None and fallback.is_file():
                console.note(log, f"{self.path} has no {self.FINAL} (the run did not finish); using {what}, "
                                  f"{fallback}")
                return fallback
        raise UsageError(f"{self.path} holds no model yet (no {self.FINAL}, {self.BEST} or checkpoint): "
                         "it stopped before its first epoch ended")

    # --- the folder's life ---------------------------------------------------------------------

    @classmethod
    def create(cls, run_dir, model, overwrite=False, root="runs"):
        """Creates, locks and returns a new run's folder: `run_dir`, or runs/<timestamp>-<model>.

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
        folder = cls(path)
        folder.lock()  # before looking for a run, so that two processes cannot both find none
        if folder.is_run():
            if not overwrite:
                folder.unlock()
                raise UsageError(f"--run-dir {run_dir} already holds a run; choose another folder, "
                                 f"continue it with --resume {run_dir}, or pass --overwrite to replace it")
            folder.remove_entries()
        return folder

    def lock(self):
        """Claims the folder for this process, or raises UsageError if another process holds it.

        An advisory lock (flock) on `.lock`: the operating system drops it when the
        process ends, however it ends, so a kill -9 never leaves a stale claim.
        """
        key = str(self.path.resolve())
        if key in _held_locks:
            return
        try:
            import fcntl
        except ImportError:  # not on POSIX: no locking
            return
        handle = open(self.path / self.LOCK, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise UsageError(f"{self.path} is in use by another alexnet process (it holds {self.path / self.LOCK}); "
                             "wait for it to finish, or choose another --run-dir") from None
        _held_locks[key] = handle

    def unlock(self):
        handle = _held_locks.pop(str(self.path.resolve()), None)
        if handle is not None:
            handle.close()

    def remove_entries(self):
        """Removes what a run wrote in the folder (ENTRIES, ENTRY_PATTERNS), and nothing else."""
        named = [self.path / name for name in self.ENTRIES]
        for entry in named + [e for pattern in self.ENTRY_PATTERNS for e in sorted(self.path.glob(pattern))]:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)

    def discard(self):
        """Removes a run that kept nothing (stopped before its first checkpoint): its files, the lock, the folder."""
        self.remove_entries()
        self.unlock()
        (self.path / self.LOCK).unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:  # the user's own files are in it
            pass

    def remove_stale_temporaries(self):
        """Deletes temporary files that a killed process left (call with the folder locked); returns their names.

        They are hidden files with ".tmp" in their names (files.write_atomic and
        files.atomic_target make them); holding the folder's lock means that no live
        process of ours is writing them.
        """
        removed = []
        for tmp in self.path.rglob(".*"):
            if ".tmp" in tmp.name and tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp.name)
        return removed


def tensorboard_tag(metric):
    """"loss" -> "epoch_loss": an epoch's metric in the run's TensorBoard logs (logs/train, validation, test), as
    Keras's own TensorBoard callback names it; the three folders share the tag, so their curves share a chart."""
    return f"epoch_{metric}"
