"""Choosing and loading the Keras backend, and the speed settings that suit the hardware."""

import contextlib
import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")


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


def select_backend(name):
    """Sets KERAS_BACKEND before Keras is imported.

    Raises:
        ValueError: If the name is unknown, or Keras already runs another backend.
    """
    if name is None:
        return
    if name not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}. Received: {name!r}")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise ValueError(f"Keras already runs the {keras.backend.backend()} backend in this process; "
                             f"--backend {name} must be chosen before Keras loads")
        return
    os.environ["KERAS_BACKEND"] = name


def load_keras(quiet=True):
    """Imports Keras (and so its backend) and returns the module.

    TensorFlow 2.21 prints start-up lines from C++ (oneDNN, CUDA probing, even
    an error line when a machine has no GPU driver) that `TF_CPP_MIN_LOG_LEVEL`
    set from inside the process no longer hides; with quiet=True they are
    dropped. Python exceptions are unaffected.
    """
    if "keras" in sys.modules or not quiet:
        import keras

        return keras
    with _stderr_silenced():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()  # probing for CUDA logs an error when there is no driver
    return keras


def tensorflow():
    """Imports TensorFlow quietly and returns it, or None where it is not installed.

    TensorBoard logs are written with `tf.summary` on every backend; the device
    machines run JAX without TensorFlow, and then there are no TensorBoard logs.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        with _stderr_silenced():
            import tensorflow as tf

            import keras

            if keras.backend.backend() != "tensorflow":
                # TensorFlow only writes logs here; left alone it would take the GPU's memory from JAX or torch.
                tf.config.set_visible_devices([], "GPU")
    except ImportError:
        return None
    return tf


def gpu_count():
    """Number of GPUs that the current Keras backend sees."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return sum(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.device_count()
    return 0


def cpu_has_bf16():
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def speed_settings(jit=None, mixed_precision=None):
    """Resolves --jit and --mixed-precision (None: auto) for the backend and hardware.

    Measured on a 2-core AVX512-BF16 CPU (BENCHMARKS.md): bfloat16 speeds up
    training on the TensorFlow and PyTorch backends and not on JAX; XLA does
    not speed up TensorFlow on the CPU. On GPUs both help.

    Returns:
        {"device": "gpu" | "cpu", "gpus": n, "jit": bool, "dtype_policy": str}
    """
    import keras

    backend = keras.backend.backend()
    gpus = gpu_count()
    if jit is None:
        jit = bool(gpus) or backend == "jax"  # JAX without jit runs op by op
    if jit and backend == "torch":
        jit = False  # Keras's torch backend has no XLA; torch.compile is not what --jit means here
    policy = "float32"
    if mixed_precision is None:
        mixed_precision = bool(gpus) or (cpu_has_bf16() and backend in ("tensorflow", "torch"))
    if mixed_precision:
        policy = "mixed_bfloat16" if not gpus or _gpu_has_bf16() else "mixed_float16"
    return {"device": "gpu" if gpus else "cpu", "gpus": gpus, "jit": bool(jit), "dtype_policy": policy}


def _gpu_has_bf16():
    """Ampere (compute capability 8.0) and later compute bfloat16 natively; older GPUs get float16."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpu = tf.config.list_physical_devices("GPU")[0]
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        elif backend == "torch":
            import torch

            capability = torch.cuda.get_device_capability(0)
        else:
            import jax

            capability = tuple(int(c) for c in str(jax.devices("gpu")[0].compute_capability).split("."))
    except Exception:  # unknown: float16 works everywhere
        return False
    return tuple(capability) >= (8, 0)
