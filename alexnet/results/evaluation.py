"""`alexnet evaluate`: test figures of a saved model, on the run's own test split or on other data."""

import re
from pathlib import Path

from alexnet import console
from alexnet.data import ARCHIVE_SUFFIXES, FileIndex
from alexnet.data.splits import load_splits
from alexnet.errors import UsageError
from alexnet.files import writing
from alexnet.pipeline import streams
from alexnet.results.inference import StreamedImages
from alexnet.results.loading import load_model, resolve_target
from alexnet.results.report import LabelledImages, ReportOptions, write_report
from alexnet.runs import RunFolder
from alexnet.settings import recipes


def _slug(data):
    """A folder-name form of a --data value: its last path part without archive suffixes."""
    name = Path(str(data)).name or "data"
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):  # ".tar.gz" before ".tar"
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "data"


def evaluate(target, data=None, batch_size=32, limit_test=None, out=None, tta=False, ten_crop=False):
    """Evaluates a run folder's model (or a .keras file) on a test split and writes a report.

    Without `data`, a run folder is evaluated on exactly the test split it was
    trained with (same source, seed and --limit-test), so the figures equal its
    metrics.json. With `data` (the run's own data included), the test part of
    that source is used, all of it or `limit_test` images of it.

    Args:
        target: a run folder or a .keras file.
        data: a `--data` value, or None for the run's own.
        batch_size: images per prediction batch.
        limit_test: a cap on test images (seeded sample).
        out: folder for report.json, report.md, confusion.png, mistakes.png; default, in a run folder:
            `evaluation/` for the run's own test split, `evaluation-<data name>[-<limit_test>]/` for any
            other (other data, all of the run's test data, or another sample); beside a bare model file:
            `evaluation-<data name>[-<limit_test>]/`.
        tta: also report the figures of each image's and its mirror's predictions averaged.
        ten_crop: also report the figures of the paper's 10-crop test (`inference.ten_crop_probabilities`).

    Returns:
        The report's metrics ("top1_accuracy", "test_loss", "per_class", "confusion_matrix", ... and "tta"
        when asked), with "out" (the folder written).

    Raises:
        UsageError: For a missing model or run folder, a bare model file without `data`, or data whose
            image size or classes do not fit the model.
        AlexnetError: For a model file that cannot be loaded, or data that cannot be read.
    """
    console.ensure_setup()
    target = resolve_target(target, "evaluated")
    config = target.run.settings("evaluated") if target.run else None
    model = load_model(target.model_file)
    own = data is None and (limit_test is None or (config is not None and limit_test == config.limit_test))
    test, data = test_split(model, target.run, data, limit_test)
    if out:
        out = Path(out)
    elif target.run is not None and own:  # evaluation/ holds the report of the run's own test split, nothing else
        out = target.run.evaluation_dir()
    else:  # in the run folder, or beside a bare model file
        out = RunFolder(target.run or target.model_file.parent).evaluation_dir(_slug(data), limit_test)
    with writing(out, "write the evaluation into"):
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: is a file; give a folder for the report")
        out.mkdir(parents=True, exist_ok=True)
    metrics = write_report(model, test, out, ReportOptions(batch_size, tta, ten_crop))
    return {**metrics, "out": str(out)}


def test_split(model, run, data=None, limit_test=None):
    """The images a model is tested on: its run's own test split, or the test part of `data`.

    Without `data`, the run's test split exactly as in training (source, seed, and its --limit-test unless
    `limit_test` is given); with `data`, the test part of that source stored at the size the model takes,
    all of it or a seeded sample of `limit_test` images. A run that streamed its data is tested on its files
    the way it validated (for a cropping recipe: the centre crop), and so is data too large for memory.

    Args:
        model: the loaded model (its input size and classes are checked against the data).
        run: the run's RunFolder, or None for a bare model file.
        data: a `--data` value, or None for the run's own.
        limit_test: a cap on test images.

    Returns:
        (a `report.LabelledImages`: uint8 images or an `inference.StreamedImages`, labels, class names;
        the `--data` value used).

    Raises:
        UsageError: For a bare model file without `data`, or data whose image size or classes do not fit.
    """
    (_, test), data = model_splits(model, run, data, limit_test, test_only=True)
    return test, data


def model_splits(model, run, data=None, limit_test=None, test_only=False):
    """(training, test) `LabelledImages` that `model` takes, as `test_split` says; the training split is the run's
    own (its validation held out) for its own data, else the training part of `data` (None with test_only).

    Returns:
        ((training or None, test), the `--data` value used).
    """
    if data is None and run is None:
        raise UsageError("--data is needed for a bare model file (or give the run folder instead)")
    config = run.settings("evaluated") if run is not None else None
    stored = run.read_config("evaluated") if run is not None else {}
    from alexnet.model.layers import model_card  # Keras is loaded by now: the model is

    card = model_card(model)
    centre = run is None and card is not None and card.crop == "center"  # torchvision's weights: its centre crop
    streamed = bool(stored.get("data", {}).get("streamed")) or centre
    crops = centre or (streamed and recipes.get(config.recipe).crops_in_pipeline)
    seed = config.seed if config else 0
    own = data is None
    if own:
        data, limit_test = config.data, config.limit_test if limit_test is None else limit_test
    # A run's own data loads as it did in training (so the decoded-data cache is reused); other data is
    # stored at the size the model takes.
    same_source = config is not None and data == config.data
    size = tuple(model.input_shape[1:3])
    training = {"val_size": config.val_size, "limit_train": config.limit_train} if own else {}
    splits = load_splits(data, seed=seed, limit_test=limit_test, test_only=test_only, stream=True if streamed else None,
                         storage_size=config.storage_size if same_source else (None if crops else size),
                         strict=config.strict if config else False, **training)
    classes = model.output_shape[-1]
    if classes != len(splits.class_names):
        raise UsageError(f"the model predicts {classes} classes but {data} has {len(splits.class_names)}")
    parts = [(splits.x_test, splits.y_test)] if test_only else [(splits.x_train, splits.y_train),
                                                                (splits.x_test, splits.y_test)]
    labelled = []
    for images, labels in parts:
        if isinstance(images, FileIndex):  # as the run validated its files (streams.evaluation_transform)
            images = StreamedImages(images, streams.evaluation_transform(stored, size, card and card.crop),
                                    config.strict if config else False)
        elif images.shape[1:3] != size:
            raise UsageError(f"the model takes {model.input_shape[1]}x{model.input_shape[2]} images but {data} "
                             f"holds {images.shape[1]}x{images.shape[2]}")
        labelled.append(LabelledImages(images, labels, splits.class_names))
    return ((None, *labelled) if test_only else tuple(labelled)), data
