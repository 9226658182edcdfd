"""`alexnet evaluate`: test figures of a saved model, on the run's own test split or on other data."""

import re
import sys
import zipfile
from pathlib import Path

from alexnet import runs
from alexnet.config import TrainConfig
from alexnet.errors import AlexnetError, UsageError


def load_model(path):
    """Loads a `.keras` model saved by `alexnet train` for inference, with a clear error for a missing or bad file.

    The model is not compiled (inference needs no optimizer); XLA is used where
    `speed_settings` would use it for training on this hardware.
    """
    import keras

    import alexnet.layers  # noqa: F401  (registers the custom layers for deserialization)
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


def resolve_target(target):
    """Returns (model path, the run's TrainConfig or None) for a run folder or a .keras file."""
    target = Path(target)
    if target.is_dir():
        if not (target / runs.RUN_MARKER).is_file():
            raise UsageError(f"{target} is not a run folder (no {runs.RUN_MARKER}); give a run folder or a .keras file")
        settings = runs.read_run_config(target, "evaluated")["settings"]
        return run_model(target), TrainConfig.from_dict(settings)
    if not target.exists():
        raise UsageError(f"no such run folder or model file: {target}")
    return target, None


def run_model(run_dir):
    """The run's final model; for a run that did not finish, its best model or newest checkpoint, with a notice."""
    if (run_dir / "model.keras").is_file():
        return run_dir / "model.keras"
    _, checkpoint = runs.latest_checkpoint(run_dir)
    for fallback, what in ((run_dir / "best.keras", "its best model by validation accuracy"),
                           (checkpoint, "its newest checkpoint")):
        if fallback is not None and fallback.is_file():
            print(f"note: {run_dir} has no model.keras (the run did not finish); using {what}, {fallback}",
                  file=sys.stderr)
            return fallback
    raise UsageError(f"{run_dir} holds no model yet (no model.keras, best.keras or checkpoint): "
                     "it stopped before its first epoch ended")


def _slug(data):
    """A folder-name form of a --data value: its last path part without archive suffixes."""
    name = Path(str(data)).name or "data"
    for suffix in (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar", ".zip"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "data"


def evaluate(target, data=None, batch_size=32, limit_test=None, out=None, tta=False):
    """Evaluates a run folder's model (or a .keras file) on a test split and writes a report.

    Without `data`, a run folder is evaluated on exactly the test split it was
    trained with (same source, seed and --limit-test), so the figures equal its
    metrics.json. With `data`, the test part of that source is used, all of it
    or `limit_test` images of it.

    Args:
        target: a run folder or a .keras file.
        data: a `--data` value, or None for the run's own.
        batch_size: images per prediction batch.
        limit_test: a cap on test images (seeded sample).
        out: folder for report.json, report.md, confusion.png, mistakes.png;
            default: `evaluation/` beside the model for the run's own test split,
            `evaluation-<data name>/` for other data.
        tta: also report the figures of each image's and its mirror's predictions averaged.

    Returns:
        The report's metrics ("top1_accuracy", "test_loss", "per_class", "confusion_matrix", ... and "tta"
        when asked), with "out" (the folder written).

    Raises:
        UsageError: For a missing model or run folder, a bare model file without `data`, or data whose
            image size or classes do not fit the model.
        AlexnetError: For a model file that cannot be loaded, or data that cannot be read.
    """
    from alexnet.report import write_report

    model_path, config = resolve_target(target)
    model = load_model(model_path)
    images, labels, class_names, data, own = test_split(model, config, data, limit_test)
    # The run's own test split reports into evaluation/; other data into a folder of its own, so that the
    # report of the run's test split is never replaced by another one.
    base = Path(target) if Path(target).is_dir() else model_path.parent
    out = Path(out) if out else base / ("evaluation" if own else f"evaluation-{_slug(data)}")
    out.mkdir(parents=True, exist_ok=True)
    metrics = write_report(model, images, labels, class_names, out, batch_size=batch_size, tta=tta)
    return {**metrics, "out": str(out)}


def test_split(model, config, data=None, limit_test=None):
    """The images a model is tested on: its run's own test split, or the test part of `data`.

    Without `data`, the run's test split exactly as in training (source, seed, and its --limit-test unless
    `limit_test` is given); with `data`, the test part of that source stored at the size the model takes,
    all of it or a seeded sample of `limit_test` images.

    Args:
        model: the loaded model (its input size and classes are checked against the data).
        config: the run's TrainConfig, or None for a bare model file.
        data: a `--data` value, or None for the run's own.
        limit_test: a cap on test images.

    Returns:
        (images, labels, class_names, data, own): uint8 images and their labels, the `--data` value used,
        and whether it is the run's own data.

    Raises:
        UsageError: For a bare model file without `data`, or data whose image size or classes do not fit.
    """
    from alexnet.data import load_dataset
    from alexnet.splits import test_indices

    if data is None and config is None:
        raise UsageError("--data is needed to evaluate a bare model file (or give the run folder instead)")
    seed = config.seed if config else 0
    if data is None:
        data, limit_test = config.data, config.limit_test if limit_test is None else limit_test
    # A run's own data loads as it did in training (so the decoded-data cache is reused); other data is
    # stored at the size the model takes.
    own = config is not None and data == config.data
    storage = config.storage_size if own else tuple(model.input_shape[1:3])
    dataset = load_dataset(data, storage_size=storage, strict=config.strict if config else False, test_only=True)
    if dataset.x_test.shape[1:3] != tuple(model.input_shape[1:3]):
        raise UsageError(f"the model takes {model.input_shape[1]}x{model.input_shape[2]} images but {data} "
                         f"holds {dataset.x_test.shape[1]}x{dataset.x_test.shape[2]}")
    classes = model.output_shape[-1]
    if classes != len(dataset.class_names):
        raise UsageError(f"the model predicts {classes} classes but {data} has {len(dataset.class_names)}")
    rows = test_indices(len(dataset.x_test), seed, limit_test)
    return dataset.x_test[rows], dataset.y_test[rows], dataset.class_names, data, own
