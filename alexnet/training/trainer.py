"""The work of a training run, top to bottom: data -> splits -> model -> fit -> test -> the run folder.

Imported by `alexnet.training.start` once the Keras backend is chosen. `run(config, resume)` reads
in the order things happen:

1. `_prepare`: the hardware's speed settings, the distribution plan, seeds, the data and its
   splits, and the folder this process writes (claimed and locked): one immutable `Job`.
2. `_build`: the model, compiled with the recipe, restored from the newest checkpoint that loads
   (then `_commit_resume` lets the resumed folder change).
3. `_fit`: `model.fit` with the callbacks that log, checkpoint and time every epoch.
4. `_finish`: model.keras, the test report, metrics.json and the curves.
"""

import dataclasses
import logging
import math
import shutil
import tempfile
from typing import Optional

import keras

import numpy as np

from alexnet import console
from alexnet.model import layers
from alexnet.pipeline import order, streams
from alexnet.results import plots
from alexnet.settings import recipes
from alexnet.backend import speed_settings
from alexnet.training.checkpoints import (Checkpoints, Position, RestoreMetrics, StepCheckpoints, best_val_accuracy,
                                          restore)
from alexnet.training.logs import (TEST_EACH_EPOCH_COLUMNS, TOP5_COLUMNS, EpochLog, SkippedFileCount, TestEachEpoch,
                                   TimeEstimate, trim_logs)
from alexnet.training.stopping import DeferredInterrupt, StopOnInterrupt
from alexnet.settings.config import TrainConfig
from alexnet.data import FileIndex
from alexnet.training.distribute import Plan, initialize_processes, plan
from alexnet.training.environment import environment
from alexnet.errors import AlexnetError, Interrupted, UsageError
from alexnet.files import save_model_atomic
from alexnet.pipeline.feed import fit_data
from alexnet.model.builders import build_model
from alexnet.results.report import StreamedImages, summary_lines, write_report
from alexnet.runs import REPORT_MD, RunFolder, metrics_from_report
from alexnet.data.splits import Splits, splits_for

log = logging.getLogger(__name__)


def make_deterministic(seed, device, jit=False):
    """Seeds Python, NumPy and the backend, and asks TensorFlow for deterministic ops on the CPU.

    Returns whether op determinism is on (TensorFlow on the CPU only: on GPUs it
    costs speed; on every backend the seeds still fix splits, shuffling,
    initialization, augmentation and dropout). Not with XLA (`--jit`): Keras
    does not compile a TensorFlow model with op determinism on, and would train
    without XLA while the run says XLA on.
    """
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() != "tensorflow":
        return False
    from tensorflow.python.framework import config as tf_config  # TensorFlow backend only; `disable` is not public

    if device == "cpu" and not jit:
        tf_config.enable_op_determinism()
        return True
    tf_config.disable_op_determinism()  # an earlier run in this process (a notebook, the tests) may have set it
    return False


@dataclasses.dataclass(frozen=True)
class Job:
    """What one training process works with, resolved once by `_prepare`."""

    config: TrainConfig  # the run's settings as recorded: resolved, per-replica batch, base learning rate
    speed: dict  # speed_settings(): device, gpus, jit, dtype_policy
    distribution: Plan  # what runs where; distribution.is_chief: this process writes the run folder
    deterministic: bool  # TensorFlow op determinism is on
    splits: Splits  # the data, split (with its source and skipped files, for config.json)
    folder: RunFolder  # where this process writes: the run folder (chief), or a temporary one (other workers)
    state: RunFolder  # the run folder whose checkpoints this process resumes from
    stored: Optional[dict]  # a resumed run's config.json; None for a new run
    interrupt: DeferredInterrupt  # Ctrl-C, recorded; acted on at safe points
    skips: streams.SkippedFiles  # streamed files that could not be read, by epoch

    @property
    def resumed(self):
        return self.stored is not None

    @property
    def streamed(self):  # the splits are files on disk (FileIndex), not arrays
        return isinstance(self.splits.x_train, FileIndex)

    @property
    def transforms(self):  # (training, evaluation) streams.Transform of a streamed run
        return streams.transforms(recipes.get(self.config.recipe), self.splits.x_train.size, self.config.image_size)

    @property
    def input_shape(self):  # what the model takes: the stored images, or the pipeline's crops
        return (*self.transforms[0].size, 3) if self.streamed else tuple(self.splits.x_train.shape[1:])

    @property
    def steps_per_epoch(self):  # a stream reads whole global batches (alexnet.pipeline.order); arrays end with a short one
        if self.streamed:
            return order.steps_per_epoch(len(self.splits.x_train), self.global_batch)
        return recipes.steps_per_epoch(len(self.splits.x_train), self.global_batch)

    @property
    def global_batch(self):  # images per step, all replicas together
        return self.config.batch_size * self.distribution.replicas

    @property
    def global_lr(self):  # the linear scaling rule
        return self.config.lr * self.distribution.replicas

    @property
    def one_hot_classes(self):  # label smoothing needs one-hot labels
        return len(self.splits.class_names) if recipes.get(self.config.recipe).one_hot else None


def run(config, stored=None):
    """Trains a run (a resolved config) or, given `stored` (its config.json), continues it.

    Returns:
        (the RunFolder written, the test metrics).
    """
    with DeferredInterrupt() as interrupt:  # Ctrl-C acts between phases and steps, never inside one
        job = _prepare(config, stored, interrupt)
        try:
            interrupt.check()
            return job.folder, _train(job)
        except BaseException as error:
            _clean_up(job, error)
            if isinstance(error, KeyboardInterrupt) and job.interrupt.exit_code != 130:  # a stop signal, outside fit
                raise Interrupted(f"{_stopped_by(job)}; what was saved is kept. Resume with: alexnet train --resume "
                                  f"{_run_folder(job)}", job.interrupt.exit_code) from None
            raise
        finally:
            if not job.distribution.is_chief:  # another worker's folder is temporary
                shutil.rmtree(job.folder.path, ignore_errors=True)


def _prepare(config, stored, interrupt):
    initialize_processes(config.strategy)  # multi-host JAX: before any other JAX call
    speed = speed_settings(config.jit, config.mixed_precision)
    distribution = plan(config.strategy, speed["gpus"])  # before other TensorFlow work, as tf.distribute asks
    # A resumed run must not change backend or strategy with the environment: record what was resolved.
    config = dataclasses.replace(config, backend=keras.backend.backend(), strategy=distribution.strategy)
    keras.config.set_dtype_policy(speed["dtype_policy"])
    deterministic = make_deterministic(config.seed, speed["device"], speed["jit"])
    splits = splits_for(config)
    global_batch = config.batch_size * distribution.replicas
    if global_batch > len(splits.x_train):
        raise UsageError(f"--batch-size {config.batch_size} (global batch {global_batch}) is larger than "
                         f"the training split ({len(splits.x_train)} images): no full step could run. "
                         "Use a smaller batch size.")
    interrupt.check()
    if not distribution.is_chief:  # other workers run every step but write to a folder of their own
        folder = RunFolder(tempfile.mkdtemp(prefix="alexnet-worker-"))
        state = RunFolder(config.run_dir) if stored is not None else folder
    elif stored is not None:
        folder = state = RunFolder(config.run_dir)
        folder.lock()
    else:
        folder = state = RunFolder.create(config.run_dir, config.model, overwrite=config.overwrite)
    job = Job(config, speed, distribution, deterministic, splits, folder, state, stored, interrupt,
              streams.SkippedFiles(config.strict))
    if distribution.is_chief and stored is None:
        try:
            _write_new_run(job)
        except BaseException as error:
            _clean_up(job, error)
            raise
    return job


def _write_new_run(job):
    """config.json (which marks the folder as a run) and samples.png of a new run."""
    config, splits = job.config, job.splits
    data = {
        "source": splits.source, "class_names": splits.class_names,
        "image_shape": list(job.input_shape), "train": len(splits.x_train),
        "validation": len(splits.x_val), "test": len(splits.x_test),
        "test_images_also_in_training": splits.test_duplicates, "skipped_files": len(splits.skipped),
        "streamed": job.streamed,
    }
    if splits.class_ids and splits.class_ids != splits.class_names:  # ImageNet: wnids beside the names
        data["class_ids"] = splits.class_ids
    if job.streamed:
        index = splits.x_train
        data["index_bytes_per_image"] = round((index.nbytes + splits.y_train.nbytes) / max(1, len(index)), 1)
        data["transforms"] = {"train": dataclasses.asdict(job.transforms[0]),
                              "evaluation": dataclasses.asdict(job.transforms[1])}
    job.folder.write_config({
        "settings": config.to_dict(), "data": data,
        "recipe": recipes.describe(config.recipe, job.global_batch, job.global_lr, config.pca_lighting,
                                   config.ten_crop, config.ema),
        "distribution": job.distribution.describe(config.batch_size, config.lr),
        "speed": {**job.speed, "op_determinism": job.deterministic}, "environment": environment()})
    images, labels = splits.x_train, splits.y_train
    if job.streamed:  # a few files decoded for the picture
        rows = np.sort(np.random.default_rng(config.seed).choice(len(images), min(20, len(images)), replace=False))
        images, labels = streams.decoded(images, rows, job.transforms[1]), labels[rows]
    plots.sample_grid(images, labels, splits.class_names, job.folder.samples_file, seed=config.seed)


def _clean_up(job, error):
    """A new run that stops before its first checkpoint leaves no folder, so that the same command starts afresh."""
    if not job.distribution.is_chief or job.resumed or job.folder.positions():
        return
    job.folder.discard()
    if isinstance(error, (KeyboardInterrupt, Interrupted)):
        raise Interrupted(f"{_stopped_by(job)} before the first epoch ended; nothing was kept, so the same "
                          "command starts afresh", job.interrupt.exit_code) from None


def _run_folder(job):
    """The run folder to resume, as the user knows it (another JAX process's own folder is a temporary one)."""
    return job.state if job.distribution.is_chief else (job.config.run_dir or "the run folder of process 0")


def _stopped_by(job):
    return "interrupted" if job.interrupt.exit_code == 130 else f"stopped by {job.interrupt.name}"


def _train(job):
    _describe(job)
    model, position = _build(job)
    job.interrupt.check()
    if position.epoch < job.config.epochs:
        _fit(job, model, position)
    job.interrupt.stops = "before the test report (every epoch is saved)"
    return _finish(job, model)


def _describe(job):
    config, speed, distribution, splits = job.config, job.speed, job.distribution, job.splits
    log.info(f"Run folder: {job.folder}")
    log.info(f"Backend {keras.backend.backend()} on {speed['device']}"
             f"{' x' + str(speed['gpus']) if speed['gpus'] else ''}, {speed['dtype_policy']}, "
             f"XLA {'on' if speed['jit'] else 'off'}"
             f"{', oneDNN ' + ('on' if speed['onednn'] else 'off') if 'onednn' in speed else ''}; recipe {config.recipe}, batch {config.batch_size}, "
             f"lr {config.lr:g}")
    if distribution.strategy != "none":
        log.info(f"Strategy {distribution.strategy}: {distribution.replicas} replicas, {distribution.worker}; "
                 f"global batch {job.global_batch} ({config.batch_size} per replica), "
                 f"lr {job.global_lr:g} (linear scaling: {config.lr:g} x {distribution.replicas})")
    log.info(f"Data: {len(splits.x_train)} train, {len(splits.x_val)} validation, {len(splits.x_test)} test images "
             f"of {'x'.join(map(str, job.input_shape))} from {splits.source}"
             + (f" (streamed: {job.transforms[0].crop} for training)" if job.streamed else ""))
    if not len(splits.x_val):
        log.info("No validation (--val-size 0): every training image trains; history.csv and TensorBoard have no "
                 "validation figures and there is no best.keras. The test figures come once, at the end.")


def _build(job):
    """The compiled model, restored from the newest checkpoint that loads; returns (model, its `Position`)."""
    config, splits = job.config, job.splits
    crops = job.streamed and job.transforms[0].crop == "random-resized"  # then the pipeline also flips
    basis = _colour_basis(job) if config.pca_lighting else None
    with job.distribution.scope():
        augmentation = recipes.augmentation(config.recipe, config.seed, in_pipeline=crops,
                                            pca_lighting=config.pca_lighting, colour_basis=basis)
        model = build_model(config.model, input_shape=job.input_shape,
                            num_classes=len(splits.class_names), image_size=config.image_size,
                            augmentation=augmentation)
        recipes.compile_model(model, config, job.steps_per_epoch, jit=job.speed["jit"], lr=job.global_lr)
        if job.speed["jit"] and not model.jit_compile:  # Keras said so only in a warning
            console.note(log, "XLA is off after all: Keras cannot compile this model with it (on TensorFlow, the "
                              "recipe's random translation has no XLA kernel); training without it")
        position = restore(model, job.state) if job.resumed else Position()
    if not job.resumed:
        if not console.quiet():
            model.summary(print_fn=lambda line, line_break=True: log.info(line))
    elif job.distribution.is_chief:
        _commit_resume(job, position.epoch)
    return model, position


def _colour_basis(job, count=256):
    """The colour components of the PCA lighting noise, from a seeded sample of the training images.

    The paper takes them over all of ImageNet's training pixels; a few hundred images give the same 3x3
    covariance to a few percent. Streamed files are read as evaluation reads them (the centre crop).
    """
    images = job.splits.x_train
    rows = np.sort(np.random.default_rng([job.config.seed, 7]).choice(len(images), min(count, len(images)),
                                                                       replace=False))
    sample = images[rows] if not job.streamed else np.stack([
        image for image in (_decoded_or_none(images, row, job.transforms[1]) for row in rows) if image is not None])
    eigenvalues, eigenvectors = layers.colour_basis(sample)
    log.info(f"PCA lighting noise: colour eigenvalues {', '.join(f'{v:.3g}' for v in eigenvalues)} "
             f"(standardized pixels of {len(rows)} training images)")
    return eigenvalues, eigenvectors


def _decoded_or_none(index, row, transform):
    try:
        return streams.decoded(index, [row], transform)[0]
    except Exception:  # PIL and the OS raise many types; training skips (and names) such files itself
        return None


def _commit_resume(job, done):
    """The resume is known to work (its checkpoint loaded): only now may the run folder change.

    Removes temporary files a killed process left, drops what the logs hold past
    the checkpoint (those epochs run again), and records the new total of epochs.
    """
    removed = job.folder.remove_stale_temporaries()
    if removed:
        log.info(f"Removed {len(removed)} temporary file(s) left by a killed process: {', '.join(removed[:5])}")
    trim_logs(job.folder, done)
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

    The order is the contract: what adds to an epoch's logs (TestEachEpoch) runs before what writes them
    (EpochLog); the epoch is logged before it is checkpointed; a step's checkpoint is saved before
    StopOnInterrupt, last, stops the run, so that a stop always lands after a complete checkpoint.
    Every process saves (others into their own temporary folder): with several JAX processes, saving reads
    sharded arrays and takes all processes at once, so all must decide alike when to save best.keras, from
    the same (the chief's) state.
    """
    config, splits, processes = job.config, job.splits, job.distribution.shard[1]
    columns = (TOP5_COLUMNS if len(splits.class_names) > recipes.TOP5_ABOVE else ()) + \
        (TEST_EACH_EPOCH_COLUMNS if config.test_each_epoch else ())
    share = 1 - start.step / job.steps_per_epoch  # of the first epoch's images that this fit trains on
    test_each_epoch = [TestEachEpoch(test_data, order.evaluation_steps(
        len(splits.x_test), job.global_batch, job.distribution.replicas) if job.streamed else None)] \
        if config.test_each_epoch else []  # benchmarks only
    return [*test_each_epoch,
            EpochLog(job.folder, len(splits.x_train), columns, first_share=share, validation=validation),
            Checkpoints(job.folder, best_val_accuracy(job.state)),
            keras.callbacks.TerminateOnNaN(),
            TimeEstimate(config.epochs - start.epoch, job.speed["device"]),
            SkippedFileCount(job.skips),
            RestoreMetrics(start.metrics),
            StepCheckpoints(job.folder, config.checkpoint_every, job.interrupt, processes, start.step),
            StopOnInterrupt(job.interrupt, processes)]


def _fit_epochs(job, model, start, last):
    """`model.fit` from `start` (a `Position`: its epoch, the steps of it already done and their metric sums) to
    the epoch before `last`."""
    config = job.config
    first, first_step = start.epoch, start.step
    train_data, val_data, test_data, extra = fit_data(job, first, last, first_step)
    callbacks = fit_callbacks(job, start, val_data is not None, test_data)
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
        raise Interrupted(f"{_stopped_by(job)} after {where}; everything up to there is saved. Resume with: "
                          f"alexnet train --resume {_run_folder(job)}", job.interrupt.exit_code) from None
    losses = history.history.get("loss", [])
    if not all(math.isfinite(v) for v in losses):  # TerminateOnNaN stopped the epoch
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
    """Writes the final model, the test metrics, the evaluation report and the curves; returns the metrics."""
    config, splits, folder = job.config, job.splits, job.folder
    recipes.use_average(model)  # with --ema: the final model is the average
    save_model_atomic(model, folder.final_model)  # every process: saving a sharded model is collective
    if job.distribution.shard[1] > 1:
        model = _local_copy(model)
    if job.interrupt.requested:  # a stop after training: the test report (long on ImageNet) is the resume's to write
        raise Interrupted(f"{_stopped_by(job)} after the last epoch, before the test report; every epoch is saved. "
                          f"Write the report with: alexnet train --resume {_run_folder(job)}", job.interrupt.exit_code)
    test = StreamedImages(splits.x_test, job.transforms[1], config.strict) if job.streamed else splits.x_test
    report = write_report(model, test, splits.y_test, splits.class_names, folder.path,
                          log_dir=folder.log_dir("test"), step=config.epochs - 1, tta=config.tta,
                          ten_crop=config.ten_crop)  # the last epoch
    metrics = metrics_from_report(report, config.epochs)
    folder.write_metrics(metrics)
    history = folder.read_history()
    smoothing = recipes.get(config.recipe).label_smoothing  # in loss and val_loss, not in test_loss
    if history:  # a worker that resumed a finished run trained no epoch here
        plots.training_curves(history, folder.curves_file,
                              f"loss (with label smoothing {smoothing:g})" if smoothing else "loss")
        _warn_if_diverged(history[-1], len(splits.class_names), config.lr)
    for line in summary_lines(report, smoothing):
        log.info(line)
    logs = f"; tensorboard --logdir {folder.log_dir()}" if folder.log_dir().is_dir() else \
        "; no TensorBoard logs: TensorFlow is not installed"
    log.info(f"Run folder: {folder}  ({REPORT_MD}{logs})")
    return metrics
