"""Checkpoints: the state a run resumes from, each written once and atomically.

Why not Keras's `BackupAndRestore`: it writes its weights and its epoch number
in place, one after the other, so a `kill -9` between the two leaves a torn
state. Here each checkpoint is one file whose name carries its position
(`epoch-NNNN.keras`, mid-epoch `epoch-NNNN-step-SSSSSSS.keras`) and that
appears by an atomic rename, after the .json beside it.

The commit order. A run has one commit point per checkpoint, the rename that
puts `checkpoints/epoch-NNNN.keras` (or mid-epoch `epoch-NNNN-step-SSSSSSS.keras`)
in place; every other file is derived, and a resume re-derives what a crash left
behind or ahead of the newest checkpoint that loads:

1. history.csv's row and TensorBoard's events of the epoch (`logs.EpochLog`):
   written first, so they are never behind; rows past the commit are trimmed
   at resume (`logs.trim_logs`).
2. The best model so far, if it changed since the last commit, as
   `checkpoints/best-NNNN.keras` (NNNN: its epoch): a name that says which
   epoch it holds, so a crash can never leave best.keras and the record of
   its epoch disagreeing.
3. The checkpoint's .json (random-generator states, mid-epoch metric sums),
   then the checkpoint itself: THE COMMIT.
4. checkpoints/state.json (epochs, best accuracy, best epoch); best.keras made
   a hard link to (or, where links fail, a copy of) the best-NNNN.keras of
   the best committed epoch; at resume `settle_best` does the same from the
   committed history.
5. The checkpoints this one supersedes are removed (the two newest epochs and
   best models are kept; mid-epoch ones go once their epoch is committed).
6. After the last epoch: model.keras, the report files, curves.png, and last
   metrics.json, which marks the run finished (a resume before it writes them).

Epochs are committed at most every `gap` seconds of training (`--checkpoint-gap`),
so that short epochs (seconds on a GPU) do not spend as long saving as training:
an epoch that ends sooner is logged but not saved, and the best model's weights
wait in host memory for the next commit. The last epoch of a fit and an epoch
where a stop signal lands are always committed. A crash loses at most `gap`
seconds of training.

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
from alexnet.files import atomic_target, copy_atomic, save_model_atomic, write_json
from alexnet.training.stopping import agree_to_save

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2  # the newest and the one before, to fall back on if the newest is damaged (so best models)


def finite(logs):
    """Whether every loss in `logs` is a finite number."""
    return all(math.isfinite(float(v)) for k, v in (logs or {}).items() if "loss" in k)


class Checkpoints(keras.callbacks.Callback):
    """Commits the run's state (model and optimizer) at epoch ends, at most every `gap` seconds, and keeps the best
    model by validation accuracy.

    `checkpoints/epoch-NNNN.keras` is the model after NNNN completed epochs;
    the newest two are kept, so that a resume can fall back on the one before
    if the newest was damaged. `checkpoints/state.json` records the epochs
    completed and the best validation accuracy so far (written atomically
    after the checkpoint), so the best-so-far survives a lost history.csv.
    `best.keras` is the model with the highest `val_accuracy` so far, as of the
    last commit. An epoch whose loss is not finite is never saved, and stops
    the fit (`keras.callbacks.TerminateOnNaN` would read the loss after every
    step, a wait for the device each time).

    Args:
        folder: the RunFolder written.
        best: (best validation accuracy, its epoch) so far (`best_so_far`).
        gap: fewest seconds of training between two epoch commits (0: every epoch).
        interrupt: the run's `DeferredInterrupt` (an epoch where a stop lands is committed), or None.
        processes: JAX processes: saving is collective, so all follow the chief's clock.
    """

    def __init__(self, folder, best=(-1.0, None), gap=0.0, interrupt=None, processes=1):
        super().__init__()
        self.folder = folder  # runs.RunFolder
        self.best_accuracy, self.best_epoch = best  # so far: `best_so_far`
        self.gap, self.interrupt, self.processes = float(gap), interrupt, processes
        # (epoch, state) of a best model not yet written; the state (`_state`: weights and optimizer, as
        # host arrays, as saved models hold them) None when the model holds it still.
        self.pending = None
        self._last = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if not finite(logs):
            self.model.stop_training = True  # the trainer says what is kept
            return
        accuracy = (logs or {}).get("val_accuracy")
        improved = accuracy is not None and math.isfinite(accuracy) and accuracy > self.best_accuracy
        if improved:
            self.best_accuracy, self.best_epoch = float(accuracy), epoch + 1
        last = (self.params or {}).get("epochs") == epoch + 1
        stop = self.interrupt is not None and self.interrupt.requested
        due, _ = agree_to_save(time.monotonic() - self._last >= self.gap or last or stop, self.interrupt,
                               self.processes)
        if due:
            if improved:
                self.pending = (epoch + 1, None)
            self.commit(epoch + 1)
        elif improved:  # kept until the next commit: a copy now, while the model (and its optimizer) hold it
            self.pending = (epoch + 1, _state(self.model))

    def commit(self, epochs, steps=0):
        """Writes the pending best model, then the checkpoint after `epochs` epochs and `steps` steps (the commit),
        then what derives from them (the module's docstring: the commit order)."""
        model, folder = self.model, self.folder
        folder.checkpoint_dir.mkdir(exist_ok=True)
        if self.pending is not None:
            epoch, state = self.pending
            with _holding(model, state):
                save_model_atomic(model, folder.best_checkpoint(epoch))
        path = save_checkpoint(model, folder, epochs, steps)  # THE COMMIT
        self.pending = None
        folder.write_state(epochs, self.best_accuracy, self.best_epoch)
        if self.best_epoch is not None:
            link_best(folder, self.best_epoch)
        for _, old in folder.checkpoints()[KEEP_CHECKPOINTS:]:
            _remove_checkpoint(folder, old)
        for _, old in folder.best_checkpoints()[KEEP_CHECKPOINTS:]:
            old.unlink(missing_ok=True)
        for old in folder.step_files():  # the mid-epoch checkpoints this one supersedes
            if old.stem != path.stem:
                old.unlink(missing_ok=True)
        self._last = time.monotonic()
        return path


class _holding:
    """With a state given (`_state`: host arrays), the model and its optimizer hold it for the duration, then their
    own again."""

    def __init__(self, model, state):
        self.model, self.state, self.own = model, state, None

    def __enter__(self):
        if self.state is not None:
            self.own = _state(self.model)
            _assign(self.model, self.state)

    def __exit__(self, *exc):
        if self.own is not None:
            _assign(self.model, self.own)
        return False


def _state(model):
    """The model's weights and its optimizer's variables, as host arrays: what a saved model holds."""
    return [_value(v) for v in (*model.weights, *model.optimizer.variables)]


def _assign(model, state):
    for variable, value in zip((*model.weights, *model.optimizer.variables), state):
        variable.assign(value)


def link_best(folder, epoch):
    """Makes best.keras the best model of `epoch` (checkpoints/best-NNNN.keras): a hard link, renamed into place;
    a copy where the file system has no links. Returns whether that model was there."""
    source = folder.best_checkpoint(epoch)
    if not source.is_file():
        return False
    target = folder.best_model
    if target.is_file() and os.path.samefile(source, target):
        return True
    tmp = atomic_target(target)
    try:
        os.link(source, tmp)
    except OSError:
        copy_atomic(source, target)
        return True
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return True


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

    A crash between a commit and its best.keras (or state.json) leaves
    best.keras stale or missing; it is made again from the best committed
    epoch's best-NNNN.keras (or, for runs written before those, its checkpoint)
    while that still exists. Best models of epochs past the commit are removed.
    """
    for epoch, path in folder.best_checkpoints():
        if epoch > done:
            path.unlink(missing_ok=True)
    if not done:  # nothing committed: the run starts again
        return
    accuracy, epoch = best_so_far(folder, done)
    recorded = folder.read_state().get("best_epoch")
    if epoch is not None and not link_best(folder, epoch):
        stale = epoch != recorded or not folder.best_model.is_file()
        if stale and folder.checkpoint_file(epoch).is_file():
            copy_atomic(folder.checkpoint_file(epoch), folder.best_model)
            log.info(f"best.keras rebuilt from the checkpoint of epoch {epoch}, the best committed one")
        elif stale:
            log.warning(f"best.keras does not hold epoch {epoch}, the best, whose model is gone: it is written "
                        "again when validation improves")
    folder.write_state(done, accuracy, epoch)
