"""The work of a training run, top to bottom: data -> splits -> model -> fit -> test -> the run folder.

Imported by `alexnet.training.start` once the Keras backend is chosen. `run(config, resume)` reads
in the order things happen:

1. `job.prepare`: the hardware's speed settings, the distribution plan, seeds, the data and its
   splits, and the folder this process writes (claimed and locked): one immutable `Job`.
2. `_build`: the model, compiled with the recipe, restored from the newest checkpoint that loads
   (then `_commit_resume` lets the resumed folder change).
3. `_fit`: `model.fit` with the callbacks that log, checkpoint and time every epoch.
4. `_finish`: model.keras, the test report, metrics.json and the curves.
"""

import logging
import math
import shutil

import keras

from alexnet import console
from alexnet.errors import AlexnetError, Interrupted
from alexnet.files import save_model_atomic
from alexnet.model import compiling, sources, transfer
from alexnet.model.builders import build_model
from alexnet.pipeline import streams
from alexnet.pipeline.feed import Epochs
from alexnet.results import plots
from alexnet.results.inference import StreamedImages
from alexnet.results.report import LabelledImages, ReportOptions, metrics_from_report, summary_lines, write_report
from alexnet.runs import REPORT_MD
from alexnet.settings import recipes
from alexnet.training.checkpoints import Checkpoints, Position, best_so_far, remove_superseded, restore, settle_best
from alexnet.training.inputs import fit_data
from alexnet.training.job import clean_up, colour_basis, describe, prepare, run_folder, stopped_by
from alexnet.training.mid_epoch import RestoreMetrics, StepCheckpoints
from alexnet.training.logs import (TEST_EACH_EPOCH_COLUMNS, TOP5_COLUMNS, EpochLog, SkippedFileCount, TestEachEpoch,
                                   TimeEstimate, UnpaddedValidationLoss, trim_logs)
from alexnet.training.stopping import DeferredInterrupt, StopOnInterrupt

log = logging.getLogger(__name__)


def run(config, stored=None):
    """Trains a run (a resolved config) or, given `stored` (its config.json), continues it.

    Returns:
        (the RunFolder written, the test metrics).
    """
    with DeferredInterrupt() as interrupt:  # Ctrl-C acts between phases and steps, never inside one
        job = prepare(config, stored, interrupt)
        try:
            interrupt.check()
            return job.folder, _train(job)
        except BaseException as error:
            clean_up(job, error)
            if isinstance(error, KeyboardInterrupt) and job.interrupt.exit_code != 130:  # a stop signal, outside fit
                raise Interrupted(f"{stopped_by(job)}; what was saved is kept. Resume with: alexnet train --resume "
                                  f"{run_folder(job)}", job.interrupt.exit_code) from None
            raise
        finally:
            if not job.distribution.is_chief:  # another worker's folder is temporary
                shutil.rmtree(job.folder.path, ignore_errors=True)


def _train(job):
    describe(job)
    model, position = _build(job)
    job.interrupt.check()
    if position.epoch < job.config.epochs:
        _fit(job, model, position)
    job.interrupt.stops = "before the test report (every epoch is saved)"
    return _finish(job, model)


def _build(job):
    """The compiled model, restored from the newest checkpoint that loads; returns (model, its `Position`)."""
    config, splits = job.config, job.splits
    crops = job.streamed and recipes.get(config.recipe).crops_in_pipeline  # then the pipeline also flips
    basis = colour_basis(job) if config.pca_lighting else None
    with job.distribution.scope():
        augmentation = compiling.augmentation(config.recipe, config.seed, in_pipeline=crops,
                                            pca_lighting=config.pca_lighting, colour_basis=basis)
        model = build_model(config.model, input_shape=job.input_shape,
                            num_classes=len(splits.class_names), image_size=config.image_size,
                            augmentation=augmentation, card=job.card)
        frozen = transfer.freeze(model, config.freeze)  # before compiling: the optimizer leaves them out
        compiling.compile_model(model, config, job.steps_per_epoch, jit=job.speed["jit"], lr=job.global_lr)
        if job.speed["jit"] and not model.jit_compile:  # Keras said so only in a warning
            console.note(log, "XLA is off after all: Keras cannot compile this model with it (a layer it holds has "
                              "no XLA kernel, or TensorFlow's op determinism is on); training without it")
        position = restore(model, job.state) if job.resumed else Position()
        if config.init_from is not None and position == Position():  # a new run (or one that crashed before epoch 1)
            _initialize(job, model, frozen)
    if not job.resumed:
        if not console.quiet():
            model.summary(print_fn=lambda line, line_break=True: log.info(line))
    elif job.distribution.is_chief:
        _commit_resume(job, position)
    return model, position


def _initialize(job, model, frozen):
    """Copies the trained weights that the run starts from into `model`, and says what was kept and what is new."""
    config, recorded = job.config, (job.stored or {}).get("init", {})  # a run that crashed before epoch 1: its record
    source = sources.describe(recorded.get("file", config.init_from))  # the recorded absolute path: any folder
    if recorded.get("sha256") not in (None, source.sha256() if recorded else None):
        raise AlexnetError(f"--init-from {config.init_from}: {source.path} changed since this run started from it "
                           f"(sha256 {recorded['sha256'][:12]}... then); start a new run")
    names = list(job.splits.class_names)
    other_classes = source.class_names is not None and source.class_names != names  # same count, other classes
    kept, new = transfer.initialize(model, source.path, skip=("predictions",) if other_classes else ())
    log.info(f"Started from {source.path} ({source.model}): {transfer.describe(kept, new, model)}"
             + (f"; frozen: {', '.join(frozen)}" if frozen else ""))


def _commit_resume(job, position):
    """The resume is known to work (its checkpoint loaded): only now may the run folder change.

    Removes temporary files and superseded mid-epoch checkpoints a killed process
    left, drops what the logs hold past the checkpoint (those epochs run again),
    settles best.keras, and records the new total of epochs.
    """
    done = position.epoch
    removed = job.folder.remove_stale_temporaries()
    if removed:
        log.info(f"Removed {len(removed)} temporary file(s) left by a killed process: {', '.join(removed[:5])}")
    remove_superseded(job.folder, position)
    trim_logs(job.folder, done)
    settle_best(job.folder, done)
    job.folder.write_config({**job.stored, "settings": job.config.to_dict()})


def _fit(job, model, position):
    """Trains from `position` to the last epoch: a resumed epoch's remaining steps first, as a fit of their own."""
    start = position.epoch + bool(position.step)
    if position.step:
        _fit_epochs(job, model, position, position.epoch + 1)
    if start < job.config.epochs:
        _fit_epochs(job, model, Position(start), job.config.epochs)


def fit_callbacks(job, start, validation, test_data):
    """The callbacks of a fit from `start` (a `Position`), in the order their work needs.

    The order is the contract: what changes or adds to an epoch's logs (UnpaddedValidationLoss, TestEachEpoch)
    runs before what writes them (EpochLog); the epoch is logged before it is checkpointed; a step's checkpoint
    is saved before StopOnInterrupt, last, stops the run, so that a stop always lands after a complete checkpoint.
    Every process saves (others into their own temporary folder): with several JAX processes, saving reads
    sharded arrays and takes all processes at once, so all must decide alike when to save best.keras, from
    the same (the chief's) state.
    """
    config, splits, processes = job.config, job.splits, job.distribution.shard[1]
    columns = (TOP5_COLUMNS if recipes.logs_top_k(len(splits.class_names)) else ()) + \
        (TEST_EACH_EPOCH_COLUMNS if config.test_each_epoch else ())
    share = 1 - start.step / job.steps_per_epoch  # of the first epoch's images that this fit trains on
    test_each_epoch = [TestEachEpoch(test_data, job.feed.evaluation_steps(len(splits.x_test)) if job.streamed
                                     else None)] if config.test_each_epoch else []  # benchmarks only
    validated = len(splits.x_val)
    checkpoints = Checkpoints(job.folder, best_so_far(job.state, start.epoch), config.checkpoint_gap, job.interrupt,
                              processes)
    # Keras calls the per-step end hooks on a thread of their own, and the device runs ahead, only where every
    # callback that has one is async-safe: TimeEstimate is; RestoreMetrics (a mid-epoch resume's first fit) is not.
    return [*([UnpaddedValidationLoss(job.feed.evaluation_size(validated) / validated)] if validated else []),
            *test_each_epoch,
            EpochLog(job.folder, job.images_per_epoch, columns, first_share=share, validation=validation),
            checkpoints,
            TimeEstimate(config.epochs - start.epoch, job.speed["device"]),
            SkippedFileCount(job.skips),
            *([RestoreMetrics(start.metrics)] if start.metrics is not None else []),
            StepCheckpoints(checkpoints, config.checkpoint_every, job.interrupt, processes, start.step),
            StopOnInterrupt(job.interrupt, processes)]


def _fit_epochs(job, model, start, last):
    """`model.fit` from `start` (a `Position`: its epoch, the steps of it already done and their metric sums) to
    the epoch before `last`."""
    config = job.config
    first = start.epoch
    train_data, val_data, test_data, extra, reading = fit_data(job, Epochs(first, last, start.step))
    callbacks = reading + fit_callbacks(job, start, val_data is not None, test_data)  # the data's own first
    try:
        history = model.fit(train_data, validation_data=val_data, epochs=last, initial_epoch=first,
                            callbacks=callbacks, verbose=console.keras_verbosity(),
                            shuffle=False, **extra)  # the pipeline shuffles
    except AlexnetError:
        raise
    except Exception as error:  # tf.data raises a strict read error as its own error type
        if streams.STRICT_MARK not in str(error):
            raise
        raise AlexnetError(streams.strict_message(str(error))) from None
    except KeyboardInterrupt:
        saved = job.state.positions()
        if not saved:
            raise
        (completed, steps), _ = saved[0]
        where = f"{completed} completed epoch(s)" + (f" and {steps} step(s) of epoch {completed + 1}" if steps else "")
        raise Interrupted(f"{stopped_by(job)} after {where}; everything up to there is saved. Resume with: "
                          f"alexnet train --resume {run_folder(job)}", job.interrupt.exit_code) from None
    losses = history.history.get("loss", [])
    if not all(math.isfinite(v) for v in losses):  # Checkpoints stopped the fit
        completed, checkpoint = job.state.latest_checkpoint()
        logged = len(job.folder.read_history())
        if checkpoint:
            kept = f"the last good checkpoint ({checkpoint}, epoch {completed}) is kept"
        elif logged:
            kept = f"{logged} epoch(s) ran, but none had a finite validation loss, so there is no checkpoint"
        else:
            kept = "no epoch completed, so there is no checkpoint"
        raise AlexnetError(f"the training loss became NaN or infinite in epoch {first + len(losses)}; "
                           f"{kept}. Lower --lr (now {config.lr}) and start a new run.")


def _warn_if_diverged(last_epoch, classes, lr):
    """Says so when the final validation loss (without validation: the training loss) is not finite or far above
    a chance-level guess's (ln classes)."""
    part = "validation" if "val_loss" in last_epoch else "training"
    loss = last_epoch["val_loss" if part == "validation" else "loss"]
    chance = math.log(classes)
    if not math.isfinite(loss) or loss > 3 * chance:
        log.warning(f"the final {part} loss is {loss:.4g}, far above a chance-level guess's "
                    f"({chance:.2f}): training diverged, and the saved models predict poorly. Lower --lr "
                    f"(now {lr:g}) and start a new run.")


def _local_copy(model):
    """The model with its (replicated) weights on this process's devices alone.

    With several JAX processes, predictions come back as arrays spread over
    every process, which no process can read; each process evaluates the test
    split on its own copy instead (only the chief's report is kept).
    """
    keras.distribution.set_distribution(None)
    local = keras.models.clone_model(model)
    local.set_weights(model.get_weights())
    return local


def _finish(job, model):
    """Writes the final model, the evaluation report, the curves and, last, the test metrics (metrics.json marks
    the run finished: a crash before it leaves the rest to the resume); returns the metrics."""
    config, splits, folder = job.config, job.splits, job.folder
    compiling.use_average(model)  # with --ema: the final model is the average
    save_model_atomic(model, folder.final_model)  # every process: saving a sharded model is collective
    if job.distribution.shard[1] > 1:
        model = _local_copy(model)
    if job.interrupt.requested:  # a stop after training: the test report (long on ImageNet) is the resume's to write
        raise Interrupted(f"{stopped_by(job)} after the last epoch, before the test report; every epoch is saved. "
                          f"Write the report with: alexnet train --resume {run_folder(job)}", job.interrupt.exit_code)
    images = StreamedImages(splits.x_test, job.transforms[1], config.strict) if job.streamed else splits.x_test
    options = ReportOptions(tta=config.tta, ten_crop=config.ten_crop, log_dir=folder.log_dir("test"),
                            step=config.epochs - 1)  # TensorBoard: at the last epoch
    report = write_report(model, LabelledImages(images, splits.y_test, splits.class_names), folder.path, options)
    history = folder.read_history()
    smoothing = recipes.get(config.recipe).label_smoothing  # in loss and val_loss, not in test_loss
    if history:  # a worker that resumed a finished run trained no epoch here
        plots.training_curves(history, folder.curves_file,
                              f"loss (with label smoothing {smoothing:g})" if smoothing else "loss")
        _warn_if_diverged(history[-1], len(splits.class_names), config.lr)
    metrics = metrics_from_report(report, config.epochs)
    folder.write_metrics(metrics)  # the run's last write: it is finished
    for line in summary_lines(report, smoothing):
        log.info(line)
    logs = f"; tensorboard --logdir {folder.log_dir()}" if folder.log_dir().is_dir() else \
        "; no TensorBoard logs: TensorFlow is not installed"
    log.info(f"Run folder: {folder}  ({REPORT_MD}{logs})")
    return metrics
