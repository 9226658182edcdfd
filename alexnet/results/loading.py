"""Which model a command means, and loading it: a run folder or a .keras file, with clear errors."""

import dataclasses
import zipfile
from pathlib import Path
from typing import Optional

from alexnet.errors import AlexnetError, UsageError
from alexnet.runs import RunFolder


@dataclasses.dataclass(frozen=True)
class Target:
    """What `evaluate`, `predict` and `export` were pointed at."""

    model_file: Path
    run: Optional[RunFolder]  # the run folder given (its own test split applies), or None for a model file
    home: Optional[RunFolder]  # the run folder that holds the model file (its class names), given or not


def resolve_target(target, purpose="used"):
    """Resolves a run folder or a .keras file: the one way `evaluate`, `predict` and `export` find their model.

    A run folder gives its model (`RunFolder.model_file`); a .keras file gives
    itself, and the run folder that holds it if any (beside it, or above
    checkpoints/).

    Raises:
        UsageError: For a folder that is not a run, a damaged config.json, or a path that does not exist.
    """
    target = Path(target)
    if target.is_dir():
        folder = RunFolder(target)
        if not folder.is_run():
            raise UsageError(f"{target} is not a run folder (no {RunFolder.CONFIG}); give a run folder or a "
                             ".keras file")
        folder.read_config(purpose)  # a damaged config.json is named now, not at first use
        return Target(folder.model_file(), folder, folder)
    if not target.is_file():
        raise UsageError(f"no such run folder or model file: {target}")
    home = next((RunFolder(p) for p in (target.parent, target.parent.parent) if RunFolder(p).is_run()), None)
    return Target(target, None, home)


def load_model(path):
    """Loads a `.keras` model saved by `alexnet train` for inference, with a clear error for a missing or bad file.

    The model is not compiled (inference needs no optimizer); XLA is used where
    `speed_settings` would use it for training on this hardware.
    """
    import keras

    import alexnet.model.layers  # noqa: F401  (registers the custom layers for deserialization)
    from alexnet.backend import speed_settings

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no model file at {path}")
    if not zipfile.is_zipfile(path):  # Keras reads a damaged archive as "File not found", which misleads
        raise AlexnetError(f"cannot load {path}: it is not a valid Keras archive (a .keras file is a zip "
                           "archive; this one is truncated, damaged or of another kind)")
    try:
        model = keras.saving.load_model(path, compile=False)
        model.jit_compile = speed_settings(mixed_precision=False)["jit"]
        return model
    except Exception as error:  # Keras raises many types for truncated or foreign files
        raise AlexnetError(f"cannot load {path} as a Keras model ({type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else 'no detail'})") from error
