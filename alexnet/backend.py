"""Choosing and loading the Keras backend, and the speed settings that suit the hardware."""

import contextlib
import importlib.util
import logging
import os
import pathlib
import signal
import sys
import threading

from alexnet import console
from alexnet.errors import check_choice
from alexnet.settings.choices import BACKENDS

log = logging.getLogger(__name__)


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
    check_choice("--backend", name, BACKENDS)  # a UsageError, which is a ValueError
    if importlib.util.find_spec(name) is None:
        raise ValueError(missing_backend_message(name))
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise ValueError(f"Keras already runs the {keras.backend.backend()} backend in this process; "
                             f"--backend {name} must be chosen before Keras loads")
        return
    os.environ["KERAS_BACKEND"] = name


def missing_backend_message(name):
    """What to install for a Keras backend that is not installed."""
    command = "pip install tensorflow" if name == "tensorflow" else f'pip install -e ".[{name}]" (or pip install {name})'
    return f"the {name} backend is not installed; install it with: {command}"


startup_logs = False  # the CLI's --debug: show TensorFlow's C++ start-up lines


def load_keras(quiet=None):
    """Imports Keras (and so its backend) and returns the module.

    TensorFlow 2.21 prints start-up lines from C++ (oneDNN, CUDA probing, even
    an error line when a machine has no GPU driver) that `TF_CPP_MIN_LOG_LEVEL`
    set from inside the process no longer hides; with quiet=True they are
    dropped (the default, unless `startup_logs` is set). Python exceptions are unaffected.

    A Ctrl-C during the import is held until the import is over, then raised as
    KeyboardInterrupt: landing inside TensorFlow's or JAX's initialization, it
    left half-initialized modules that crashed the interpreter on exit (exit 139).
    """
    if quiet is None:
        quiet = not startup_logs
    if "keras" in sys.modules:
        return _import_keras(quiet)
    with held_interrupt():
        return _import_keras(quiet)


@contextlib.contextmanager
def held_interrupt():
    """Holds Ctrl-C (SIGINT) for the duration, then raises it as KeyboardInterrupt if it came.

    For imports of native libraries, where a KeyboardInterrupt can leave them half-initialized.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


def _import_keras(quiet):
    named = os.environ.get("KERAS_BACKEND")
    if "keras" not in sys.modules and named and named not in BACKENDS:
        from alexnet.errors import UsageError

        raise UsageError(f"KERAS_BACKEND={named} is not a backend alexnet runs on; set it to one of "
                         f"{', '.join(BACKENDS)}, or unset it (TensorFlow is the default)")
    if "keras" not in sys.modules:
        # TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI, BF16 or AMX; on an
        # AVX2-only CPU its own kernels train AlexNet 2-3x slower (BENCHMARKS.md, "Against a hand-written PyTorch
        # loop"). A value the user set wins.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    try:
        if "keras" in sys.modules or not quiet:
            import keras

            return keras
        with _stderr_silenced():
            import keras
    except ModuleNotFoundError as error:  # KERAS_BACKEND names a backend that is not installed
        if error.name in BACKENDS:
            from alexnet.errors import UsageError

            raise UsageError(missing_backend_message(error.name) +
                             f" (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')})") from None
        raise
    with _stderr_silenced():
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
            import keras
            import tensorflow as tf

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


def cpu_has_fast_bf16(cpuinfo=None):
    """Whether bfloat16 training beats float32 on this CPU, from /proc/cpuinfo (BENCHMARKS.md, "dtype on CPUs").

    Measured: on an AMD EPYC with AVX512-BF16, bfloat16 trains AlexNet 1.6x
    faster than float32; on an Intel Xeon with AVX512-BF16 but no AMX it is
    1.4x *slower* (oneDNN converts and computes on the vector units). Intel's
    AMX tile units are what make bfloat16 fast there.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    if " amx_bf16" in cpuinfo:
        return True
    return "AuthenticAMD" in cpuinfo and " avx512_bf16" in cpuinfo


def nvidia_gpu_present(root="/"):
    """Whether this machine gives the process an NVIDIA GPU: a device node /dev/nvidia0, /dev/nvidia1, ...

    Read from the file system, without loading a CUDA library (nvidia-smi may be
    absent). The device nodes, not /proc/driver/nvidia/gpus: /proc/driver is not
    namespaced, so a container given no GPU can still list the host's there.

    Args:
        root: the file system's root (a test's fake /dev).
    """
    return any(pathlib.Path(root, "dev").glob("nvidia[0-9]*"))  # not nvidiactl, nvidia-uvm: they come without GPUs


# What gives each backend the GPU: plain `tensorflow` and the `jax` extra's jaxlib run on the CPU only.
GPU_INSTALL = {"tensorflow": 'pip install -e ".[gpu]" (tensorflow[and-cuda])',
               "jax": 'pip install -e ".[gpu]" (jax[cuda12])',
               "torch": "a CUDA build of torch (https://pytorch.org/get-started/locally/)"}

_said = {"torch_jit": False, "gpu_unseen": False, "gpu_capability": False}  # notes said once a process


def _say_gpu_unseen(backend):
    """Notes once a process that the machine has an NVIDIA GPU the backend does not see, and what to install."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")  # the user hid the GPUs on purpose
    if _said["gpu_unseen"] or hidden or backend not in GPU_INSTALL or not nvidia_gpu_present():
        return
    _said["gpu_unseen"] = True
    console.note(log, f"an NVIDIA GPU is present but the {backend} backend does not see it: training and "
                      f"evaluation run on the CPU. Install GPU support with: {GPU_INSTALL[backend]}")


def speed_settings(jit=None, mixed_precision=None):
    """Resolves --jit and --mixed-precision (None: auto) for the backend and hardware.

    Measured on 2-core CPUs (BENCHMARKS.md): where `cpu_has_fast_bf16`, bfloat16
    speeds up training on the TensorFlow and PyTorch backends and not on JAX;
    XLA does not speed up TensorFlow on the CPU. On GPUs both help.

    Returns:
        {"device": "gpu" | "cpu", "gpus": n, "jit": bool, "dtype_policy": str}
    """
    import keras

    backend = keras.backend.backend()
    gpus = gpu_count()
    if not gpus:
        _say_gpu_unseen(backend)
    asked_jit = jit is not None
    if jit is None:
        jit = bool(gpus) or backend == "jax"  # JAX without jit runs op by op
    if jit and backend == "torch":
        if asked_jit and not _said["torch_jit"]:
            _said["torch_jit"] = True
            console.note(log, "--jit has no effect on the torch backend (Keras's torch backend has no XLA); "
                              "training without it")
        jit = False  # torch.compile is not what --jit means here
    policy = "float32"
    if mixed_precision is None:
        mixed_precision = bool(gpus) or (cpu_has_fast_bf16() and backend in ("tensorflow", "torch"))
    if mixed_precision:
        policy = "mixed_bfloat16" if not gpus or _gpu_has_bf16() else "mixed_float16"
    settings = {"device": "gpu" if gpus else "cpu", "gpus": gpus, "jit": bool(jit), "dtype_policy": policy}
    if backend == "jax" and gpus:
        settings["compilation_cache"] = _jax_compilation_cache()
    if backend == "tensorflow":
        settings["onednn"] = onednn_enabled()
    return settings


def _jax_compilation_cache():
    """Turns on JAX's persistent compilation cache (in the package's cache folder) and returns the folder.

    On a GPU each compile with convolution autotuning takes seconds to tens of
    seconds; the cache keeps them for the next process (a resume, `evaluate`, the next run of the same shapes).
    """
    import jax

    from alexnet.data.cache import cache_dir  # the package's one cache folder ($ALEXNET_CACHE_DIR)

    folder = cache_dir() / "jax-compilation"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)  # the step functions, not small ops
    return str(folder)


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN kernels on the CPU (`TF_ENABLE_ONEDNN_OPTS`, see `load_keras`)."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # no public API says it

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"


# What reading the compute capability raises: no GPU of the kind (IndexError; JAX's RuntimeError), a device that is
# not TensorFlow's (ValueError), torch's failed CUDA start (RuntimeError, AssertionError), a device without the
# attribute (AttributeError) or with a non-numeric one, as ROCm's "gfx90a" (ValueError).
_CAPABILITY_ERRORS = (IndexError, ValueError, RuntimeError, AssertionError, AttributeError)


def _gpu_has_bf16():
    """Ampere (compute capability 8.0) and later compute bfloat16 natively; older GPUs get float16.

    Where the capability cannot be read, float16, which every GPU runs, and a note that says so.
    """
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpu = tf.config.list_physical_devices("GPU")[0]
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")  # NVIDIA only
        elif backend == "torch":
            import torch

            capability = torch.cuda.get_device_capability(0)
        else:
            import jax

            capability = tuple(int(c) for c in str(jax.devices("gpu")[0].compute_capability).split("."))
    except _CAPABILITY_ERRORS as error:
        capability, why = None, f"{type(error).__name__}: {error}"
    else:
        why = "the backend does not report it"
    if capability is None:
        if not _said["gpu_capability"]:
            _said["gpu_capability"] = True
            console.note(log, f"could not read the GPU's compute capability on the {backend} backend ({why}): mixed "
                              f"precision computes in float16, which every GPU runs (bfloat16 needs compute capability "
                              f"8.0 or later); --no-mixed-precision trains in float32")
        return False
    return tuple(capability) >= (8, 0)
