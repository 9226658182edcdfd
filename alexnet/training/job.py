"""What one training process works with, resolved once before training: the `Job`.

`prepare(config, stored, interrupt)` applies the hardware's speed settings, plans the
distribution, seeds everything, loads and splits the data, and claims the folder
this process writes; a new run's config.json and samples.png are written here.
"""

import dataclasses
import logging
import tempfile
from typing import Optional

import keras
import numpy as np

from alexnet.backend import speed_settings
from alexnet.data import FileIndex
from alexnet.data.splits import Splits, splits_for
from alexnet.errors import Interrupted, UsageError
from alexnet.model import layers, sources
from alexnet.model.architecture import VARIANTS
from alexnet.pipeline import streams
from alexnet.pipeline.feed import Feed
from alexnet.results import plots
from alexnet.runs import RunFolder
from alexnet.settings import recipes
from alexnet.settings.config import TrainConfig
from alexnet.training.distribute import Plan, initialize_processes, plan
from alexnet.training.environment import environment
from alexnet.training.stopping import DeferredInterrupt

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
    def global_batch(self):  # images per step, all replicas together
        return self.distribution.global_batch(self.config.batch_size)

    @property
    def global_lr(self):  # the linear scaling rule
        return self.distribution.global_lr(self.config.lr)

    @property
    def feed(self):  # how every split of the run is fed (streamed files: as evaluation reads them)
        return Feed(self.global_batch, self.distribution.shard, self.distribution.replicas, self.config.seed,
                    self.one_hot_classes, self.transforms[1] if self.streamed else None, self.skips)

    @property
    def steps_per_epoch(self):  # whole global batches, arrays and streams alike (alexnet.pipeline.order)
        return self.feed.steps_per_epoch(len(self.splits.x_train))

    @property
    def images_per_epoch(self):  # the rest of a permutation (fewer than a global batch) waits for another epoch
        return self.steps_per_epoch * self.global_batch

    @property
    def card(self):  # what the saved models carry (layers.ModelCard): class names, how files become their input
        return {"class_names": list(self.splits.class_names),
                "crop": self.transforms[1].crop if self.streamed else "resize"}

    @property
    def one_hot_classes(self):  # label smoothing needs one-hot labels
        return len(self.splits.class_names) if recipes.get(self.config.recipe).one_hot else None


def prepare(config, stored, interrupt):
    initialize_processes(config.strategy)  # multi-host JAX: before any other JAX call
    speed = speed_settings(config.jit, config.mixed_precision)
    distribution = plan(config.strategy, speed["gpus"])  # before other TensorFlow work, as tf.distribute asks
    # A resumed run must not change backend or strategy with the environment: record what was resolved.
    config = dataclasses.replace(config, backend=keras.backend.backend(), strategy=distribution.strategy)
    keras.config.set_dtype_policy(speed["dtype_policy"])
    deterministic = make_deterministic(config.seed, speed["device"], speed["jit"])
    splits = splits_for(config)
    global_batch = distribution.global_batch(config.batch_size)
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
            _write_samples(job)
        except BaseException as error:
            clean_up(job, error)
            raise
    elif distribution.is_chief and not folder.samples_file.is_file():  # a crash came before it
        _write_samples(job)
    return job


def _write_new_run(job):
    """config.json of a new run, which marks the folder as a run."""
    config, splits = job.config, job.splits
    data = {
        "source": splits.source, "class_names": splits.class_names,
        "image_shape": list(job.input_shape), "train": len(splits.x_train),
        "validation": len(splits.x_val), "test": len(splits.x_test),
        "test_images_also_in_training": splits.test_duplicates, "skipped_files": len(splits.skipped),
        "streamed": job.streamed,
        # Whole global batches only (alexnet.pipeline.order): each epoch leaves a different remainder out.
        "steps_per_epoch": job.steps_per_epoch, "images_per_epoch": job.images_per_epoch,
    }
    if splits.class_ids and splits.class_ids != splits.class_names:  # ImageNet: wnids beside the names
        data["class_ids"] = splits.class_ids
    if job.streamed:
        index = splits.x_train
        data["index_bytes_per_image"] = round((index.nbytes + splits.y_train.nbytes) / max(1, len(index)), 1)
        data["transforms"] = {"train": dataclasses.asdict(job.transforms[0]),
                              "evaluation": dataclasses.asdict(job.transforms[1])}
    init = {}
    if config.init_from is not None:  # where the weights came from, to the byte
        source = sources.describe(config.init_from)
        init = {"init": {"from": config.init_from, "file": str(source.path.resolve()), "sha256": source.sha256(),
                         "model": source.model, "classes": source.classes, "freeze": config.freeze}}
    job.folder.write_config({
        "settings": config.to_dict(), "data": data, **init,
        "recipe": recipes.describe(config.recipe, job.global_batch, job.global_lr, config.pca_lighting,
                                   config.ten_crop, config.ema),
        "distribution": job.distribution.describe(config.batch_size, config.lr),
        "speed": {**job.speed, "op_determinism": job.deterministic}, "environment": environment()})


def _write_samples(job):
    """samples.png: a seeded grid of training images."""
    config, splits = job.config, job.splits
    images, labels = splits.x_train, splits.y_train
    if job.streamed:  # a few files decoded for the picture
        rows = np.sort(np.random.default_rng(config.seed).choice(len(images), min(20, len(images)), replace=False))
        images, rows = streams.decoded(images, rows, job.transforms[1])
        labels = labels[rows]
    plots.sample_grid(images, labels, splits.class_names, job.folder.samples_file, seed=config.seed)


def clean_up(job, error):
    """A new run that stops before its first checkpoint leaves no folder, so that the same command starts afresh."""
    if not job.distribution.is_chief or job.resumed or job.folder.positions():
        return
    job.folder.discard()
    if isinstance(error, (KeyboardInterrupt, Interrupted)):
        raise Interrupted(f"{stopped_by(job)} before the first epoch ended; nothing was kept, so the same "
                          "command starts afresh", job.interrupt.exit_code) from None


def run_folder(job):
    """The run folder to resume, as the user knows it (another JAX process's own folder is a temporary one)."""
    return job.state if job.distribution.is_chief else (job.config.run_dir or "the run folder of process 0")


def stopped_by(job):
    return "interrupted" if job.interrupt.exit_code == 130 else f"stopped by {job.interrupt.name}"


def describe(job):
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


def colour_basis(job, count=256):
    """The colour components of the PCA lighting noise, from a seeded sample of the training images.

    The paper takes them over all of ImageNet's training pixels; a few hundred images give the same 3x3
    covariance to a few percent. Streamed files are read as evaluation reads them (the centre crop).
    """
    images = job.splits.x_train
    rows = np.sort(np.random.default_rng([job.config.seed, 7]).choice(len(images), min(count, len(images)),
                                                                       replace=False))
    sample = images[rows] if not job.streamed else streams.decoded(images, rows, job.transforms[1])[0]
    eigenvalues, eigenvectors = layers.colour_basis(sample, VARIANTS[job.config.model].pixels)
    log.info(f"PCA lighting noise: colour eigenvalues {', '.join(f'{v:.3g}' for v in eigenvalues)} "
             f"({VARIANTS[job.config.model].pixels} pixels of {len(rows)} training images)")
    return eigenvalues, eigenvectors

