"""Checkpoints: the state a run resumes from, each written once and atomically.

Why not Keras's `BackupAndRestore`: it writes its weights and its epoch number
in place, one after the other, so a `kill -9` between the two leaves a torn
state. Here each checkpoint is one file whose name carries its position
(`epoch-NNNN.keras`, mid-epoch `epoch-NNNN-step-SSSSSSS.keras`) and that
appears by an atomic rename, after the .json beside it.

The commit order. A run has one commit point per epoch, the rename that puts
`checkpoints/epoch-NNNN.keras` in place (and one per mid-epoch checkpoint, its
`epoch-NNNN-step-SSSSSSS.keras`); every other file is derived, and a resume
re-derives what a crash left behind or ahead of the newest checkpoint that loads:

1. history.csv's row and TensorBoard's events of the epoch (`logs.EpochLog`):
   written first, so they are never behind; rows past the commit are trimmed
   at resume (`logs.trim_logs`).
2. The checkpoint's .json (random-generator states, mid-epoch metric sums),
   then the checkpoint itself: THE COMMIT.
3. best.keras, when validation improved; then checkpoints/state.json (epochs,
   best accuracy, best epoch). At resume `settle_best` rebuilds a best.keras
   that a crash left stale or missing from the best committed epoch's checkpoint.
4. The checkpoints this one supersedes are removed (the two newest epochs are
   kept; mid-epoch ones go once their epoch is committed).
5. After the last epoch: model.keras, the report files, curves.png, and last
   metrics.json, which marks the run finished (a resume before it writes them).

A crash before the first commit leaves nothing to resume from: the resume
starts the run again from epoch 0, with its own settings (`start.resume_config`).
"""

import dataclasses
import json
import logging
import math
import os
import time
from typing import Optional

import keras
import numpy as np

from alexnet.errors import AlexnetError
from alexnet.files import copy_atomic, save_model_atomic, write_json

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2  # the newest and the one before, to fall back on if the newest is damaged


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

    def __init__(self, folder, best=(-1.0, None)):
        super().__init__()
        self.folder = folder  # runs.RunFolder
        self.best_accuracy, self.best_epoch = best  # so far: `best_so_far`

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        save_checkpoint(self.model, self.folder, epoch + 1)  # the commit (see the module's docstring)
        accuracy = (logs or {}).get("val_accuracy")
        if accuracy is not None and math.isfinite(accuracy) and accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = float(accuracy), epoch + 1
            save_model_atomic(self.model, self.folder.best_model)
        self.folder.write_state(epoch + 1, self.best_accuracy, self.best_epoch)
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
    seeds = [_value(v).tolist() for v in seed_states(model)]
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


def remove_superseded(folder, position):
    """At resume from `position`: removes the mid-epoch checkpoints before it, which a crash between an epoch's
    commit and their removal (step 4 of the commit order) left behind."""
    for step_position, path in folder.step_checkpoints():
        if step_position < (position.epoch, position.step):
            _remove_checkpoint(folder, path)


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
    states, seeds = seed_states(model), stored.get("seeds", [])
    if len(seeds) != len(states):
        raise ValueError(f"its {folder.sidecar(path).name} holds {len(seeds)} random-generator states, the model "
                         f"{len(states)}")
    for variable, value in zip(states, seeds):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return stored.get("metrics")


def seed_states(model):
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


def best_so_far(state, done):
    """(best validation accuracy, its epoch counted from 1) over the first `done` epochs: from history.csv's
    rows, else from checkpoints/state.json, else (-1, None).

    A pure read, the same in every process: all must decide alike when to save best.keras (a collective save
    with several JAX processes).
    """
    rows = [row for row in state.read_history()
            if row.get("epoch", math.inf) < done and math.isfinite(row.get("val_accuracy", math.nan))]
    if rows:
        best = max(rows, key=lambda row: row["val_accuracy"])  # the first of equals, as Checkpoints keeps it
        return best["val_accuracy"], int(best["epoch"]) + 1
    stored = state.read_state()
    accuracy = stored.get("best_val_accuracy")
    return (float(accuracy), stored.get("best_epoch")) if isinstance(accuracy, (int, float)) else (-1.0, None)


def settle_best(folder, done):
    """At resume from `done` epochs: best.keras and state.json as the committed epochs say they are.

    A crash between an epoch's checkpoint and its best.keras (or state.json)
    leaves best.keras stale or missing; it is rebuilt from the best committed
    epoch's checkpoint while that still exists.
    """
    if not done:  # nothing committed: the run starts again
        return
    accuracy, epoch = best_so_far(folder, done)
    recorded = folder.read_state().get("best_epoch")
    stale = epoch is not None and (epoch != recorded or not folder.best_model.is_file())
    if stale and folder.checkpoint_file(epoch).is_file():
        copy_atomic(folder.checkpoint_file(epoch), folder.best_model)
        log.info(f"best.keras rebuilt from the checkpoint of epoch {epoch}, the best committed one")
    elif stale and not folder.best_model.is_file():
        log.warning(f"best.keras is missing and the checkpoint of its epoch ({epoch}) is gone: it is written again "
                    "when validation improves")
    folder.write_state(done, accuracy, epoch)


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
