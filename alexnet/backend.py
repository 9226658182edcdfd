"""Loading Keras and its backend, once, before any model code runs."""

import contextlib
import os
import sys


@contextlib.contextmanager
def _stderr_silenced():
    """Sends file descriptor 2 to /dev/null for the duration (C++ logs bypass Python's sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_keras(quiet=True):
    """Imports Keras (and so its backend) and returns the module.

    TensorFlow 2.21 prints start-up lines from C++ (oneDNN, CUDA probing, even an error line when a machine has no GPU driver) that
    `TF_CPP_MIN_LOG_LEVEL` set from inside the process no longer hides; with
    quiet=True they are dropped. Python exceptions are unaffected.
    """
    if "keras" in sys.modules or not quiet:
        import keras

        return keras
    with _stderr_silenced():
        import keras

        if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
            import tensorflow as tf

            tf.config.list_physical_devices()  # probing for CUDA logs an error when there is no driver
    return keras
