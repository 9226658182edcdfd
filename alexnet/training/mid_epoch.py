"""Mid-epoch checkpoints, and the metric sums of a resumed epoch: an epoch stopped in its middle goes on where it
stopped, and logs the figures of all of its steps.

The commit itself, and the order of the writes around it, are the epoch checkpoints' (`checkpoints.py`).
"""

import logging
import time

import keras
import numpy as np

from alexnet.training.checkpoints import finite
from alexnet.training.stopping import agree_to_save

log = logging.getLogger(__name__)


class StepCheckpoints(keras.callbacks.Callback):
    """Mid-epoch checkpoints: every `minutes` of training, and at the step where a stop signal (or Ctrl-C) lands.

    An epoch of ImageNet takes hours on a GPU and days on a CPU, longer than a
    preemption's grace period: without these a stop loses the epoch so far.
    Only the newest is kept, and the epoch's own checkpoint removes it. At an
    epoch's last step nothing is saved: the epoch's checkpoint follows at once
    (`StopOnInterrupt` waits for it). The save goes through the epoch
    checkpoints' `commit`, so that a best model waiting in memory is written first.

    The check runs as the next step begins (`on_train_batch_begin`), between
    steps on the main thread, and reads the clock and the signal flag, never a
    device value: nothing here makes the host wait for the device (Keras runs the
    per-step end hooks on a thread of its own where no callback needs the main
    one). With several JAX processes saving is collective, so before each step
    they agree whether to save: by the chief's clock, or because any of them has
    received a signal.

    Args:
        checkpoints: the fit's `Checkpoints` (its folder and its best model waiting to be written).
        minutes: training time between checkpoints; 0: only when stopped by a signal.
        interrupt: the run's `DeferredInterrupt`.
        processes: JAX processes.
        first_step: steps of the first epoch done before this fit (a mid-epoch resume).
    """

    def __init__(self, checkpoints, minutes, interrupt, processes=1, first_step=0):
        super().__init__()
        self.checkpoints, self.seconds, self.interrupt = checkpoints, 60 * float(minutes or 0), interrupt
        self.processes, self.first_step = processes, first_step
        self._epoch, self._offset, self._last = None, first_step, time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        if self._epoch is not None:  # only the first epoch of a resumed fit starts mid-way
            self._offset = 0
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:  # nothing trained in this epoch yet
            return
        due = bool(self.seconds) and time.monotonic() - self._last >= self.seconds
        save, _ = agree_to_save(due, self.interrupt, self.processes)
        if not save:
            return
        model = self.model  # on JAX, this puts the training state back into the model's variables
        if not finite(model.get_metrics_result()):  # the epoch's mean loss so far: NaN once any step's was
            return
        self.checkpoints.commit(self._epoch, self._offset + batch)
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

    def on_train_batch_end(self, batch, logs=None):  # only in a fit resumed mid-epoch: not async-safe, once
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
