"""What a run records about the code and the machine that made it (config.json, BENCHMARKS.md)."""

import platform
import subprocess
from pathlib import Path


def git_commit():
    """The commit of the checkout this package runs from (with "-dirty" for local changes), or None."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        return subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment():
    """Library versions, the Keras backend and the devices it sees, for config.json (call once Keras is loaded)."""
    import keras  # loaded by then: the run has chosen its backend
    import numpy

    from alexnet import __version__
    from alexnet.backend import tensorflow

    info = {
        "alexnet": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "backend": keras.backend.backend(),
    }
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
