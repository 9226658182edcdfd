"""`alexnet train`: the two entry points of training, `train(config)` and `resume(run_dir)`.

    run = train(TrainConfig(data="cifar10", recipe="cpu"))   # a new run folder
    run = resume("runs/20261127-213000-alexnet")              # continue a stopped run
    run.run_dir, run.metrics                                   # the folder, the test figures

Each one picks the Keras backend exactly once, in `_start`, before Keras loads:
from the config for a new run, from the run's own config.json for a resumed
one. That is why this module does not import Keras; `alexnet.training.trainer`, which
does the work (data -> splits -> model -> fit -> test -> the run folder), is
imported after the choice. A run survives a crash: each completed epoch leaves
a checkpoint, and `resume` continues from the newest one that loads.
"""

import dataclasses
import logging
from pathlib import Path
from typing import Optional

from alexnet import backend, console
from alexnet.errors import UsageError
from alexnet.runs import RunFolder
from alexnet.settings.config import TrainConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Run:
    """A finished training run: its folder and its test figures (metrics.json)."""

    run_dir: Path
    metrics: dict


def train(config: TrainConfig) -> Run:
    """Trains a new run and writes its folder.

    Args:
        config: the run's settings; those left at None are the recipe's (`TrainConfig.resolved`).

    Returns:
        The `Run`: its folder and test metrics.

    Raises:
        UsageError: For settings that do not fit the data or the run folder.
        AlexnetError: For data that cannot be read, or a loss that became NaN.
        Interrupted: On Ctrl-C, after saying how to resume.
    """
    if not isinstance(config, TrainConfig):
        raise UsageError(f"train() takes a TrainConfig. Received: {type(config).__name__}; "
                         "to continue a run, call resume(run_dir)")
    return _start(config.validate())  # validate needs no Keras: a bad setting fails before the backend loads


def resume(run_dir, epochs: Optional[int] = None) -> Run:
    """Continues a stopped run from its newest checkpoint that loads, with the run's own settings.

    Args:
        run_dir: the run's folder.
        epochs: a new total number of epochs; needed to extend a finished run.

    Returns:
        The `Run`, as `train` does.

    Raises:
        UsageError: If the folder holds no run that can be resumed (no or a damaged
            config.json, checkpoints gone), or `epochs` is too small.
    """
    console.ensure_setup()
    config, stored = resume_config(run_dir, epochs)
    return _start(config, stored)


def resume_config(run_dir, epochs=None):
    """The settings of the run in run_dir and its config.json, with the total epochs changed if given.

    Refuses to extend a finished run unless `epochs` says how far, and to
    resume a run whose checkpoints were deleted after it committed an epoch. A
    run that a crash stopped before its first checkpoint starts again from
    epoch 0, with its own settings (checkpoints.py: the commit order).
    """
    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise UsageError(f"--resume {run_dir}: not a run folder (no {folder.CONFIG})")
    stored = folder.read_config("resumed")
    config = TrainConfig.from_dict(stored["settings"]).resolved()  # a run's config.json holds resolved settings
    done, _ = folder.latest_checkpoint()
    finished = folder.metrics_file.is_file()
    if not folder.positions():
        if _committed(folder):  # then checkpoints existed: someone removed them
            kept = [name for name in (folder.FINAL, folder.BEST) if (folder.path / name).is_file()]
            raise UsageError(f"--resume {run_dir}: its checkpoints ({folder.checkpoint_dir}) are gone, so it cannot "
                             "be continued" + (f"; its {' and '.join(kept)} {'are' if len(kept) > 1 else 'is'} kept"
                                               if kept else "") + ". Start a new run to train again.")
        console.note(log, f"{run_dir} stopped before its first checkpoint: training it again from epoch 0 with "
                          "its own settings")
    finished = finished and done >= config.epochs
    if epochs is not None:
        least = config.epochs + 1 if finished else done + 1
        if epochs < least:
            raise UsageError(f"--epochs {epochs}: this run has completed {done} of its {config.epochs} epochs; "
                             f"give at least {least}, or leave --epochs out to finish the planned run")
        config.epochs = epochs
    elif finished:
        raise UsageError(f"{run_dir} finished all {config.epochs} epochs; to train it further, "
                         f"say how far: --resume {run_dir} --epochs N (N > {config.epochs})")
    config.run_dir = str(run_dir)
    return config, stored


def _committed(folder):
    """Whether the run ever committed an epoch (checkpoints.py): its state says so, or it wrote a model or its
    metrics. (Its history says nothing: epochs shorter than --checkpoint-gap are logged but not committed.)"""
    return (folder.read_state().get("epochs", 0) >= 1
            or any(path.is_file() for path in (folder.final_model, folder.best_model, folder.metrics_file)))


def _choose_backend(name):
    try:
        backend.select_backend(name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _start(config, stored=None):
    """Chooses the backend (the one place a run does), then runs the trainer on the resolved config.

    Keras's global dtype policy and distribution are restored afterwards, so a
    caller's later models are not built under this run's settings.
    """
    console.ensure_setup()
    _choose_backend(config.backend)
    keras = backend.load_keras()  # quietly: TensorFlow's C++ start-up lines are not ours
    with backend.held_interrupt():  # Ctrl-C acts once the imports are done (see load_keras)
        from alexnet.training import trainer  # imports Keras: only now that the backend is chosen

    policy, distribution = keras.config.dtype_policy(), keras.distribution.distribution()
    try:
        folder, metrics = trainer.run(config, stored)
        return Run(folder.path, metrics)
    finally:
        keras.config.set_dtype_policy(policy)
        keras.distribution.set_distribution(distribution)
