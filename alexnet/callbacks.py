"""Callbacks that make a run survive a crash: per-epoch logs and checkpoints, each written once.

Why not the stock ones: `CSVLogger` and `TensorBoard` only append and buffer
their writes, and `BackupAndRestore` writes its weights and its epoch number in
place, one after the other; a `kill -9` at the wrong moment leaves lost,
duplicated or torn epochs. Here every epoch is flushed as it ends, each
checkpoint is one file whose name carries its epoch and that appears by an
atomic rename, and a resumed run first drops whatever the logs hold past the
checkpoint it resumes from.
"""

import csv
import dataclasses
import json
import logging
import math
import os
import signal
import threading
import time
from typing import Optional

import keras
import numpy as np

from alexnet.backend import tensorflow
from alexnet.errors import AlexnetError, StopNow
from alexnet.files import atomic_target, save_model_atomic, write_json

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2  # the newest and the one before, to fall back on if the newest is damaged
# seconds: the whole epoch, validation included; images_per_s: the training part alone.
HISTORY_COLUMNS = ("epoch", "accuracy", "loss", "val_accuracy", "val_loss", "seconds", "images_per_s")
TEST_EACH_EPOCH_COLUMNS = ("test_accuracy", "test_seconds", "finished_at")  # with --test-each-epoch
TOP5_COLUMNS = ("top5_accuracy", "val_top5_accuracy")  # data with more than 5 classes (recipes.compile_model)


def in_order(callbacks):
    """The callbacks sorted by their ORDER: what adds to an epoch's logs runs before what writes them
    (TestEachEpoch before EpochLog), the epoch is logged before it is checkpointed, and StopOnInterrupt runs
    last, once the epoch's checkpoint is complete. Callbacks without an ORDER (Keras's) go in the middle."""
    return sorted(callbacks, key=lambda callback: getattr(callback, "ORDER", 50))


def _finite(logs):
    return all(math.isfinite(float(v)) for k, v in (logs or {}).items() if "loss" in k)


class Checkpoints(keras.callbacks.Callback):
    """Keeps the last epochs' full state (model and optimizer) and the best model by validation accuracy.

    `checkpoints/epoch-NNNN.keras` is the model after NNNN completed epochs;
    the newest two are kept, so that a resume can fall back on the one before
    if the newest was damaged. `checkpoints/state.json` records the epochs
    completed and the best validation accuracy so far (written atomically
    after the checkpoint), so the best-so-far survives a lost history.csv.
    `best.keras` is the model with the highest `val_accuracy` so far. An epoch
    whose loss is not finite is never saved.
    """

    ORDER = 20  # after EpochLog: a checkpoint's epoch is in history.csv already

    def __init__(self, folder, best_accuracy=-1.0):
        super().__init__()
        self.folder = folder  # runs.RunFolder
        self.best_accuracy = best_accuracy

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        save_checkpoint(self.model, self.folder, epoch + 1)
        accuracy = (logs or {}).get("val_accuracy")
        if accuracy is not None and math.isfinite(accuracy) and accuracy > self.best_accuracy:
            self.best_accuracy = float(accuracy)
            save_model_atomic(self.model, self.folder.best_model)
        self.folder.write_state(epoch + 1, self.best_accuracy)
        for _, old in self.folder.checkpoints()[KEEP_CHECKPOINTS:]:
            _remove_checkpoint(self.folder, old)
        for old in self.folder.step_files():  # the mid-epoch checkpoints this one supersedes
            old.unlink(missing_ok=True)


SEED_STATE = "seed_generator_state"  # the variables of keras.random.SeedGenerator (dropout, augmentation)


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a checkpoint stands: after `epoch` epochs and `step` steps of the next, with that epoch's metric
    sums so far (mid-epoch), so that its logged figures are those of the whole epoch."""

    epoch: int = 0
    step: int = 0
    metrics: Optional[list] = None  # values of model.metrics_variables, in order


def save_checkpoint(model, folder, epochs, steps=0):
    """Saves the full training state after `epochs` epochs (and `steps` steps of the next) as one checkpoint.

    `model.save` keeps the weights and the optimizer, not the states of the
    random generators (dropout masks, augmentation) nor, mid-epoch, the metric
    sums of the epoch so far; those go to the checkpoint's .json, written first,
    so that the .keras file, renamed into place last, marks a complete checkpoint.
    A resume from it continues as the run would have: the same random numbers,
    and the epoch's logged figures over all of its steps.
    """
    path = folder.checkpoint_file(epochs, steps)
    folder.checkpoint_dir.mkdir(exist_ok=True)
    seeds = [_value(v).tolist() for v in _seed_states(model)]
    metrics = [_value(v).tolist() for v in model.metrics_variables] if steps else None
    write_json(folder.sidecar(path), {"epochs": epochs, "steps": steps, "seeds": seeds, "metrics": metrics})
    save_model_atomic(model, path)
    return path


def _value(variable):
    """A variable's value in NumPy; with several JAX processes, this process's copy of a replicated one."""
    value = variable.value
    if not getattr(value, "is_fully_addressable", True):  # a global JAX array: every device holds all of it
        value = value.addressable_data(0)
    return np.asarray(keras.ops.convert_to_numpy(value))


def _remove_checkpoint(folder, path):
    path.unlink(missing_ok=True)
    folder.sidecar(path).unlink(missing_ok=True)


def _restore_sidecar(model, folder, path, mid_epoch):
    """Assigns the random-generator states saved beside a checkpoint; returns its metric sums (mid-epoch) or None.

    An epoch's checkpoint without one (written before they were kept) restores weights and optimizer only; a
    mid-epoch one cannot go on without it (ValueError).
    """
    try:
        stored = json.loads(folder.sidecar(path).read_text())
    except FileNotFoundError:
        if mid_epoch:
            raise ValueError(f"its {folder.sidecar(path).name} is missing") from None
        return None
    states, seeds = _seed_states(model), stored.get("seeds", [])
    if len(seeds) != len(states):
        raise ValueError(f"its {folder.sidecar(path).name} holds {len(seeds)} random-generator states, the model "
                         f"{len(states)}")
    for variable, value in zip(states, seeds):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return stored.get("metrics")


def _seed_states(model):
    """The model's random-generator states, in the order of its layers (their names vary from process to process:
    Keras numbers each SeedGenerator it makes)."""
    return [v for v in model.variables if v.path.endswith(SEED_STATE)]


def restore(model, state):
    """Loads the newest checkpoint of `state` that loads into `model` (weights, optimizer and random-generator
    states); returns its `Position`.

    A checkpoint that does not load (truncated by a crash or a disk error) is
    renamed to `*.damaged`, kept for inspection, and the one before is tried.
    """
    model.optimizer.build(model.trainable_variables)
    for (epoch, step), path in state.positions():
        try:
            model.load_weights(path)
            metrics = _restore_sidecar(model, state, path, mid_epoch=step > 0)
        except Exception as error:  # Keras raises many types for a damaged zip or h5 file
            damaged = path.with_name(path.name + ".damaged")
            try:
                os.replace(path, damaged)
            except FileNotFoundError:  # another process of a multi-process job set it aside first
                pass
            log.warning(f"checkpoint {path} does not load ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else 'no detail'}); kept aside as {damaged.name}")
            continue
        log.info(f"Resuming after epoch {epoch}" + (f" and {step} steps of epoch {epoch + 1}" if step else "")
                 + f" from {path}")
        return Position(epoch, step, metrics if step else None)
    kept = state.damaged_checkpoints()
    if kept:
        raise AlexnetError(f"no checkpoint of {state} loads ({', '.join(kept)} kept aside); "
                           "the run cannot be continued: start a new run")
    return Position()


def best_val_accuracy(state):
    """The best validation accuracy so far: from checkpoints/state.json, else history.csv, else none (-1)."""
    best = state.read_state().get("best_val_accuracy")
    if isinstance(best, (int, float)):
        return float(best)
    values = [row.get("val_accuracy", math.nan) for row in state.read_history()]
    return max([v for v in values if math.isfinite(v)], default=-1.0)


class EpochLog(keras.callbacks.Callback):
    """Writes each epoch's figures to history.csv and to TensorBoard, flushed as the epoch ends.

    TensorBoard gets `epoch_loss` and `epoch_accuracy` (and the learning rate)
    under logs/train and logs/validation, with the epoch as the step, as Keras's
    own TensorBoard callback names them.
    """

    ORDER = 10  # after what adds to the logs (TestEachEpoch), before Checkpoints

    def __init__(self, folder, train_images, extra_columns=(), first_share=1.0, validation=True):
        super().__init__()
        self.folder = folder  # runs.RunFolder
        self.train_images = train_images
        self.first_share = first_share  # of its images that the first epoch trains here (a mid-epoch resume: less)
        # Without validation (--val-size 0) its columns are absent, never empty or NaN.
        self.columns = tuple(column for column in HISTORY_COLUMNS + tuple(extra_columns)
                             if validation or not column.startswith("val_"))
        self._writers = {}
        self._started = self._trained = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started, self._trained = time.perf_counter(), None

    def on_test_begin(self, logs=None):  # validation starts: the epoch's training part is over
        if self._started is not None and self._trained is None:
            self._trained = time.perf_counter() - self._started

    def _writer(self, tf, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.folder.log_dir(name)))
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        # TestEachEpoch (benchmarks only) ran before this callback: its time is its own column, not the epoch's.
        seconds = time.perf_counter() - self._started - float((logs or {}).get("test_seconds", 0.0))
        images, self.first_share = self.train_images * self.first_share, 1.0
        logs = {**(logs or {}), "seconds": seconds, "images_per_s": images / (self._trained or seconds)}
        path = self.folder.history_file
        new = not path.exists() or path.stat().st_size == 0
        columns = self.columns if new else _header(path)  # a resumed run keeps the columns it started with
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(columns)
            writer.writerow([epoch] + [repr(float(logs.get(k, float("nan")))) for k in columns[1:]])
            f.flush()
            os.fsync(f.fileno())
        tf = tensorflow()
        if tf is None:
            return  # no TensorFlow (JAX-only machines): history.csv alone
        learning_rate = getattr(getattr(self.model, "optimizer", None), "learning_rate", None)
        for part, prefix in (("train", ""), ("validation", "val_"), ("test", "test_")):  # test: --test-each-epoch
            if not any(prefix + metric in logs for metric in ("loss", "accuracy")):
                continue
            writer = self._writer(tf, part)
            with writer.as_default():
                for metric in ("loss", "accuracy", "top5_accuracy"):
                    if prefix + metric in logs:
                        tf.summary.scalar(f"epoch_{metric}", float(logs[prefix + metric]), step=epoch)
                if part == "train" and learning_rate is not None:
                    tf.summary.scalar("epoch_learning_rate", float(keras.ops.convert_to_numpy(learning_rate)),
                                      step=epoch)
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _header(path):
    with open(path, newline="") as f:
        return tuple(next(csv.reader(f), ()))


def trim_logs(folder, epochs_done):
    """Drops history rows and TensorBoard events of epochs past the checkpoint a run resumes from."""
    history = folder.history_file
    if history.exists():
        with open(history, newline="") as f:
            rows = list(csv.reader(f))
        kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < epochs_done] if rows else []
        tmp = atomic_target(history)
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)
        os.replace(tmp, history)
    tf = tensorflow()
    if tf is None:
        return
    from tensorflow.core.util import event_pb2

    for events in sorted(folder.log_dir().glob("*/events.out.tfevents.*")):
        records, changed = [], False
        try:
            for record in tf.data.TFRecordDataset(str(events)).as_numpy_iterator():
                event = event_pb2.Event.FromString(record)
                if event.HasField("summary") and event.step >= epochs_done:
                    changed = True
                    continue
                records.append(record)
        except tf.errors.DataLossError:  # a record torn by the crash
            changed = True
        if changed:
            tmp = atomic_target(events)
            with tf.io.TFRecordWriter(str(tmp)) as writer:
                for record in records:
                    writer.write(record)
            os.replace(tmp, events)


class TimeEstimate(keras.callbacks.Callback):
    """Says early how long the run will take, so that no one waits hours in silence.

    After a short warm-up (compilation and the first steps are slower), it
    measures the time per step and prints the time per epoch and for the whole
    run; on a CPU, when the run would take long, it suggests what to change.
    """

    def __init__(self, epochs_left, device, warmup_steps=5, measured_steps=10, long_seconds=900):
        super().__init__()
        self.epochs_left, self.device = epochs_left, device
        self.warmup_steps, self.measured_steps, self.long_seconds = warmup_steps, measured_steps, long_seconds
        self._step, self._started, self.estimate = 0, None, None

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step == self.warmup_steps:
            self._started = time.perf_counter()
        elif self._step == self.warmup_steps + self.measured_steps and self.params.get("steps"):
            per_step = (time.perf_counter() - self._started) / self.measured_steps
            per_epoch = per_step * self.params["steps"]
            self.estimate = per_epoch * self.epochs_left
            message = (f"\nMeasured {per_step:.3g} s/step: about {_duration(per_epoch)} per epoch, "
                       f"{_duration(self.estimate)} for the {self.epochs_left} epoch(s) to go "
                       "(validation not included).")
            if self.device == "cpu" and self.estimate > self.long_seconds:
                message += (" No GPU found: for a quicker run, lower --image-size (67 is the smallest), "
                            "cap the data with --limit-train, or train on a GPU.")
            log.info(message)


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class TestEachEpoch(keras.callbacks.Callback):
    """Adds `test_accuracy`, the seconds it took (`test_seconds`) and the time (`finished_at`) to each epoch's logs.

    Only for monitoring (bench/gpu_check.sh): nothing may be chosen by it, or the
    test split would stop measuring generalization.
    """

    ORDER = 0  # before EpochLog, which writes what it adds

    def __init__(self, test_data, steps=None):
        super().__init__()
        self.test_data, self.steps = test_data, steps

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            started = time.perf_counter()
            results = self.model.evaluate(self.test_data, steps=self.steps, verbose=0, return_dict=True)
            logs["test_accuracy"] = results["accuracy"]
            logs["test_seconds"] = time.perf_counter() - started  # benchmarks subtract it from their wall-clock
            logs["finished_at"] = time.time()  # Unix time: where the epoch falls in a benchmark's wall-clock


class SkippedFileCount(keras.callbacks.Callback):
    """Says at the end of each epoch how many streamed files could not be read (each was named as it came)."""

    def __init__(self, skips):
        super().__init__()
        self.skips = skips  # streaming.SkippedFiles

    def on_epoch_end(self, epoch, logs=None):
        count = self.skips.counts.get(epoch, 0)
        if count:
            log.warning(f"{count} file(s) could not be read in epoch {epoch + 1} and were skipped")


class DeferredInterrupt:
    """While active, Ctrl-C (SIGINT) and the stop signals (SIGTERM, SIGUSR1) are recorded and acted on at safe
    points (`check`), not where they land.

    Python raises KeyboardInterrupt wherever a signal handler raises, and Keras, JAX or
    TensorFlow code swallows it in places (garbage-collection callbacks,
    finalizers, a checkpoint being written), so a Ctrl-C could be lost or tear a
    file. The run calls `check` between its phases, and `StopOnInterrupt` after
    every step and epoch. SIGTERM is what Slurm, Kubernetes and cloud preemption
    send before they kill (SIGUSR1 is Slurm's `--signal` warning): the run stops
    the same way, with exit status 143. A second signal stops at once.
    """

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))

    def __init__(self):
        self.received = None  # the first signal's number
        self.stops = "at the end of the current step"  # where the run acts on a signal now (said when one lands)
        self._previous = {}

    @property
    def requested(self):
        return self.received is not None

    @property
    def name(self):  # "Ctrl-C", "SIGTERM", ...
        return "Ctrl-C" if self.received in (None, signal.SIGINT) else signal.Signals(self.received).name

    @property
    def exit_code(self):
        return 130 if self.received in (None, signal.SIGINT) else 143

    def _handle(self, signum, frame):
        if self.requested:  # the second signal: the user (or the scheduler) does not want to wait
            raise StopNow(self.exit_code)
        self.received = signum
        if signum != signal.SIGINT:  # Ctrl-C shows itself on the terminal; a scheduler's signal does not
            log.warning(f"{signal.Signals(signum).name} received: stopping {self.stops}")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}
        return False

    def check(self):
        if self.requested:
            raise KeyboardInterrupt


class StepCheckpoints(keras.callbacks.Callback):
    """Mid-epoch checkpoints: every `minutes` of training, and at the step where a stop signal (or Ctrl-C) lands.

    An epoch of ImageNet takes hours on a GPU and days on a CPU, longer than a
    preemption's grace period: without these a stop loses the epoch so far.
    Only the newest is kept, and the epoch's own checkpoint removes it. At an
    epoch's last step nothing is saved: the epoch's checkpoint follows at once
    (`StopOnInterrupt` waits for it). With several JAX processes saving is
    collective, so after each step they agree whether to save: by the chief's
    clock, or because any of them has received a signal.

    Args:
        folder: the RunFolder written.
        minutes: training time between checkpoints; 0: only when stopped by a signal.
        interrupt: the run's `DeferredInterrupt`.
        processes: JAX processes.
        first_step: steps of the first epoch done before this fit (a mid-epoch resume).
    """

    ORDER = 90  # before StopOnInterrupt: the step where a stop lands is saved before the run stops

    def __init__(self, folder, minutes, interrupt, processes=1, first_step=0):
        super().__init__()
        self.folder, self.seconds, self.interrupt = folder, 60 * float(minutes or 0), interrupt
        self.processes, self.first_step = processes, first_step
        self._epoch, self._offset, self._last = None, first_step, time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        if self._epoch is not None:  # only the first epoch of a resumed fit starts mid-way
            self._offset = 0
        self._epoch = epoch

    def _agree(self, due):
        """(save now, stop signal received) as all processes see it."""
        if self.processes == 1:
            return due or self.interrupt.requested, self.interrupt.requested
        from jax.experimental import multihost_utils  # several processes: the JAX backend

        flags = np.asarray(multihost_utils.process_allgather(
            np.int32(int(due) | (int(self.interrupt.received or 0) << 1)))).reshape(-1)
        received = int(np.max(flags >> 1))
        if received and not self.interrupt.requested:  # another process's signal
            self.interrupt.received = received
        return bool(flags[0] & 1) or bool(received), bool(received)

    def on_train_batch_end(self, batch, logs=None):
        steps = self._offset + batch + 1
        last = self.params.get("steps") is not None and batch + 1 == self.params["steps"]
        save, _ = self._agree(bool(self.seconds) and time.monotonic() - self._last >= self.seconds)
        if not save or last or not _finite(logs):
            return
        path = save_checkpoint(self.model, self.folder, self._epoch, steps)
        for old in self.folder.step_files():
            if old.stem != path.stem:
                old.unlink(missing_ok=True)
        self._last = time.monotonic()


class RestoreMetrics(keras.callbacks.Callback):
    """Adds back the metric sums of a resumed epoch's first steps, so that the epoch's logged loss and accuracy are
    over all of its steps, as in an uninterrupted run.

    Keras resets the metrics as an epoch begins and builds the compiled ones
    only in the first step, so the saved sums are added after that step: every
    metric here is a sum and a count (`Mean` and its wrappers), so adding is
    the same as having never stopped.
    """

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_train_batch_end(self, batch, logs=None):
        if self.values is None:
            return
        variables = self.model.metrics_variables
        if len(variables) != len(self.values):
            log.warning(f"the checkpoint holds {len(self.values)} metric values, the model {len(variables)}: "
                        "this epoch's figures cover only the steps after the resume")
        else:
            for variable, value in zip(variables, self.values):
                variable.assign(variable + np.asarray(value, dtype=variable.dtype))
        self.values = None  # the first step only


class StopOnInterrupt(keras.callbacks.Callback):
    """Stops training at the next safe point after a Ctrl-C or a stop signal: the end of a step, or of an epoch's
    checkpoint.

    With several JAX processes every step is collective, so all must stop at the same step: after each step the
    processes share whether any has received a signal (one small all-gather), and all stop together, even where
    the signal reached only one of them.
    """

    ORDER = 100  # last: an epoch's checkpoint is complete before a stop

    def __init__(self, interrupt, processes=1):
        super().__init__()
        self.interrupt = interrupt
        self.processes = processes

    def _check(self):
        if self.processes > 1:
            from jax.experimental import multihost_utils  # several processes: the JAX backend

            received = int(np.max(multihost_utils.process_allgather(np.int32(self.interrupt.received or 0))))
            if received and not self.interrupt.requested:  # another process's signal
                self.interrupt.received = received
        self.interrupt.check()

    def on_train_batch_end(self, batch, logs=None):
        if self.params.get("steps") is not None and batch + 1 == self.params["steps"]:
            return  # the epoch's last step: its checkpoint comes first (on_epoch_end checks)
        self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()
