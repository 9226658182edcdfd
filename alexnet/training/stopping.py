"""Stopping on a signal: Ctrl-C, SIGTERM and SIGUSR1 are recorded, and acted on at safe points only."""

import logging
import signal
import threading

import keras
import numpy as np

from alexnet.errors import StopNow

log = logging.getLogger(__name__)


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


class StopOnInterrupt(keras.callbacks.Callback):
    """Stops training at the next safe point after a Ctrl-C or a stop signal: between two steps (as the next one
    begins, on the main thread, reading no device value), or after an epoch's checkpoint.

    With several JAX processes every step is collective, so all must stop at the same step: after each step the
    processes share whether any has received a signal (one small all-gather), and all stop together, even where
    the signal reached only one of them.
    """

    def __init__(self, interrupt, processes=1):
        super().__init__()
        self.interrupt = interrupt
        self.processes = processes

    def _check(self):
        agree_to_save(False, self.interrupt, self.processes)  # with several processes: any one's signal
        self.interrupt.check()

    def on_train_batch_begin(self, batch, logs=None):
        if batch:  # between two steps of an epoch; after its last one, its checkpoint comes first (on_epoch_end)
            self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()


def agree_to_save(due, interrupt, processes=1):
    """(save now, stop signal received) as all processes see it: by the chief's `due` (its clock), or because any
    process has received a signal. With one process, no exchange."""
    requested = interrupt is not None and interrupt.requested
    if processes == 1:
        return due or requested, requested
    from jax.experimental import multihost_utils  # several processes: the JAX backend

    flags = np.asarray(multihost_utils.process_allgather(
        np.int32(int(due) | (int(interrupt.received or 0) << 1)))).reshape(-1)
    received = int(np.max(flags >> 1))
    if received and not interrupt.requested:  # another process's signal
        interrupt.received = received
    return bool(flags[0] & 1) or bool(received), bool(received)
