"""The work of a training run, top to bottom: data -> splits -> model -> fit -> test -> the run folder.

Imported by `alexnet.training` once the Keras backend is chosen. `run(config)` reads
in the order things happen:

1. `_prepare`: the hardware's speed settings, the distribution plan, seeds, the data and its splits.
2. `_claim_folder`: the run folder, locked for this process; config.json for a new run.
3. `_build`: the model, compiled with the recipe, restored from the newest checkpoint that loads.
4. `_fit`: `model.fit` with the callbacks that log, checkpoint and time every epoch.
5. `_finish`: model.keras, the test report, metrics.json and the curves.
"""

import dataclasses
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import keras

from alexnet import plots, recipes, runs
from alexnet.backend import speed_settings
from alexnet.callbacks import (TEST_EACH_EPOCH_COLUMNS, Checkpoints, DeferredInterrupt, EpochLog, StopOnInterrupt,
                               TestEachEpoch, TimeEstimate, trim_logs)
from alexnet.config import TrainConfig
from alexnet.data import load_dataset
from alexnet.distribute import initialize_processes, plan
from alexnet.errors import AlexnetError, Interrupted, UsageError
from alexnet.models import build_model
from alexnet.pipeline import make_dataset
from alexnet.report import write_report
from alexnet.splits import make_splits


def load_splits(config):
    """Loads the data and makes the splits that a config describes (training and evaluation share it)."""
    dataset = load_dataset(config.data, storage_size=config.storage_size, strict=config.strict)
    splits = make_splits(dataset, val_size=config.val_size, seed=config.seed,
                         limit_train=config.limit_train, limit_test=config.limit_test)
    return dataset, splits


def make_deterministic(seed, device):
    """Seeds Python, NumPy and the backend, and asks TensorFlow for deterministic ops on the CPU.

    Returns whether op determinism is on (TensorFlow on the CPU only: on GPUs it
    costs speed; on every backend the seeds still fix splits, shuffling,
    initialization, augmentation and dropout).
    """
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow" and device == "cpu":
        import tensorflow as tf  # TensorFlow backend only

        tf.config.experimental.enable_op_determinism()
        return True
    return False


@dataclasses.dataclass
class Job:
    """What one training process works with, resolved once by `_prepare`."""

    config: TrainConfig  # the run's settings as recorded: per-replica batch, base learning rate
    speed: dict  # speed_settings(): device, gpus, jit, dtype_policy
    distribution: object  # distribute.Plan
    deterministic: bool  # TensorFlow op determinism is on
    dataset: object  # data.Dataset (its source and skipped files, for config.json)
    splits: object  # splits.Splits
    run_dir: Path = None  # where this process writes: the run folder, or a temporary one on other workers
    state_dir: Path = None  # the run folder whose checkpoints this process resumes from
    interrupt: DeferredInterrupt = None  # Ctrl-C, recorded; acted on at safe points

    @property
    def global_batch(self):  # images per step, all replicas together
        return self.config.batch_size * self.distribution.replicas

    @property
    def global_lr(self):  # the linear scaling rule
        return self.config.lr * self.distribution.replicas

    @property
    def one_hot_classes(self):  # label smoothing needs one-hot labels
        return len(self.splits.class_names) if recipes.uses_one_hot(self.config.recipe) else None


def run(config, stored=None):
    """Trains (or, with `stored`, the resumed run's config.json, continues) a run; returns (folder, metrics)."""
    with DeferredInterrupt() as interrupt:  # Ctrl-C acts between phases and steps, never inside one
        job = _prepare(config)
        job.interrupt = interrupt
        interrupt.check()
        return _run_job(job, config, stored)


def _run_job(job, config, stored):
    if not job.distribution.is_chief:  # other workers run every step but write to a folder of their own
        job.run_dir = Path(tempfile.mkdtemp(prefix="alexnet-worker-"))
        job.state_dir = Path(config.run_dir) if stored else job.run_dir
        try:
            return job.run_dir, _train(job, resumed=stored is not None)
        finally:
            shutil.rmtree(job.run_dir, ignore_errors=True)
    try:
        _claim_folder(job, stored)
        job.interrupt.check()
        return job.run_dir, _train(job, resumed=stored is not None, stored=stored)
    except BaseException as error:
        created = stored is None and job.run_dir is not None  # this call made the folder
        if created and not runs.checkpoints(job.run_dir):  # nothing worth keeping: leave no folder that blocks a retry
            runs.remove_run_entries(job.run_dir)
            runs.unlock_run_dir(job.run_dir)
            (job.run_dir / runs.LOCK_FILE).unlink(missing_ok=True)
            _remove_if_empty(job.run_dir)
            if isinstance(error, (KeyboardInterrupt, Interrupted)):
                raise Interrupted("interrupted before the first epoch ended; nothing was kept, so the same "
                                  "command starts afresh") from None
        raise


def _prepare(config):
    initialize_processes(config.strategy)  # multi-host JAX: before any other JAX call
    speed = speed_settings(config.jit, config.mixed_precision)
    distribution = plan(config.strategy, speed["gpus"])  # before other TensorFlow work, as tf.distribute asks
    # A resumed run must not change backend or strategy with the environment: record what was resolved.
    config = dataclasses.replace(config, backend=keras.backend.backend(), strategy=distribution.strategy)
    keras.config.set_dtype_policy(speed["dtype_policy"])
    deterministic = make_deterministic(config.seed, speed["device"])
    dataset, splits = load_splits(config)
    job = Job(config, speed, distribution, deterministic, dataset, splits)
    if job.global_batch > len(splits.x_train):
        raise UsageError(f"--batch-size {config.batch_size} (global batch {job.global_batch}) is larger than "
                         f"the training split ({len(splits.x_train)} images): no full step could run. "
                         "Use a smaller batch size.")
    return job


def _claim_folder(job, stored):
    """Locks the run folder (a new one, or the resumed one); writes config.json and samples.png for a new run.

    Sets job.run_dir as soon as the folder is claimed (so a failure before the
    first checkpoint may remove it). A resumed run's config.json is rewritten
    only once its checkpoint has loaded (`_build`).
    """
    config = job.config
    if stored is not None:
        job.run_dir = job.state_dir = Path(config.run_dir)
        runs.lock_run_dir(job.run_dir)
        return
    job.run_dir = job.state_dir = runs.new_run_dir(config.run_dir, config.model, overwrite=config.overwrite)
    splits = job.splits
    data_info = {
        "source": job.dataset.source, "class_names": splits.class_names,
        "image_shape": list(splits.x_train.shape[1:]), "train": len(splits.x_train),
        "validation": len(splits.x_val), "test": len(splits.x_test),
        "test_images_also_in_training": splits.test_duplicates, "skipped_files": len(job.dataset.skipped),
    }
    runs.write_json(job.run_dir / runs.RUN_MARKER, {
        "settings": config.to_dict(), "data": data_info,
        "recipe": recipes.describe(config.recipe, job.global_batch, job.global_lr),
        "distribution": job.distribution.describe(config.batch_size, config.lr),
        "speed": {**job.speed, "op_determinism": job.deterministic}, "environment": runs.environment()})
    plots.sample_grid(splits.x_train, splits.y_train, splits.class_names, job.run_dir / "samples.png",
                      seed=config.seed)


def _remove_if_empty(folder):
    try:
        folder.rmdir()
    except OSError:
        pass


def _train(job, resumed, stored=None):
    _describe(job)
    model, done = _build(job, resumed, stored)
    job.interrupt.check()
    if done < job.config.epochs:
        _fit(job, model, done)
    return _finish(job, model)


def _describe(job):
    config, speed, distribution, splits = job.config, job.speed, job.distribution, job.splits
    print(f"Run folder: {job.run_dir}")
    print(f"Backend {keras.backend.backend()} on {speed['device']}"
          f"{' x' + str(speed['gpus']) if speed['gpus'] else ''}, {speed['dtype_policy']}, "
          f"XLA {'on' if speed['jit'] else 'off'}; recipe {config.recipe}, batch {config.batch_size}, lr {config.lr:g}")
    if distribution.strategy != "none":
        print(f"Strategy {distribution.strategy}: {distribution.replicas} replicas, {distribution.worker}; "
              f"global batch {job.global_batch} ({config.batch_size} per replica), "
              f"lr {job.global_lr:g} (linear scaling: {config.lr:g} x {distribution.replicas})")
    print(f"Data: {len(splits.x_train)} train, {len(splits.x_val)} validation, {len(splits.x_test)} test images "
          f"of {'x'.join(map(str, splits.x_train.shape[1:]))} from {job.dataset.source}")


def _build(job, resumed, stored):
    """The compiled model, restored from the newest checkpoint that loads; returns (model, epochs done)."""
    config, splits = job.config, job.splits
    with job.distribution.scope():
        model = build_model(config.model, input_shape=splits.x_train.shape[1:],
                            num_classes=len(splits.class_names), image_size=config.image_size,
                            augmentation=recipes.augmentation(config.recipe, config.seed))
        recipes.compile_model(model, config, recipes.steps_per_epoch(len(splits.x_train), job.global_batch),
                              jit=job.speed["jit"], lr=job.global_lr)
        done = _restore(model, job.state_dir) if resumed else 0
    if not resumed:
        model.summary()
    elif job.run_dir == job.state_dir:  # the chief: the resume is known to work, the folder may change now
        removed = runs.remove_stale_temporaries(job.run_dir)
        if removed:
            print(f"Removed {len(removed)} temporary file(s) left by a killed process: {', '.join(removed[:5])}")
        trim_logs(job.run_dir, done)  # epochs logged after the checkpoint was taken are run again
        runs.write_json(job.run_dir / runs.RUN_MARKER, {**stored, "settings": config.to_dict()})
    return model, done


def _restore(model, state_dir):
    """Loads the newest checkpoint that loads into `model` (weights and optimizer state); returns its epoch.

    A checkpoint that does not load (truncated by a crash or a disk error) is
    renamed to `*.damaged`, kept for inspection, and the one before is tried.
    """
    model.optimizer.build(model.trainable_variables)
    for epoch, path in runs.checkpoints(state_dir):
        try:
            model.load_weights(path)
        except Exception as error:  # Keras raises many types for a damaged zip or h5 file
            damaged = path.with_name(path.name + ".damaged")
            try:
                os.replace(path, damaged)
            except FileNotFoundError:  # another process of a multi-process job set it aside first
                pass
            print(f"warning: checkpoint {path} does not load ({type(error).__name__}: "
                  f"{str(error).splitlines()[0] if str(error) else 'no detail'}); kept aside as {damaged.name}",
                  file=sys.stderr)
            continue
        print(f"Resuming after epoch {epoch} from {path}")
        return epoch
    kept = sorted(p.name for p in (Path(state_dir) / runs.CHECKPOINT_DIR).glob("*.damaged"))
    if kept:
        raise AlexnetError(f"no checkpoint of {state_dir} loads ({', '.join(kept)} kept aside); "
                           "the run cannot be continued: start a new run")
    return 0


def _best_val_accuracy(state_dir):
    """The best validation accuracy so far: from checkpoints/state.json, else history.csv, else none (-1)."""
    state = runs.read_state(state_dir)
    if isinstance(state.get("best_val_accuracy"), (int, float)):
        return float(state["best_val_accuracy"])
    values = [row.get("val_accuracy", math.nan) for row in runs.read_history(state_dir)]
    return max([v for v in values if math.isfinite(v)], default=-1.0)


def _fit(job, model, done):
    config, splits, shard = job.config, job.splits, job.distribution.shard
    classes = job.one_hot_classes
    # A resumed run shuffles with another seed, so it does not replay the first epochs' orders.
    replicas = job.distribution.replicas
    train_data = make_dataset(splits.x_train, splits.y_train, job.global_batch, shuffle=True,
                              seed=config.seed + done, num_classes=classes, shard=shard, replicas=replicas)
    val_data = make_dataset(splits.x_val, splits.y_val, job.global_batch, num_classes=classes, shard=shard,
                            replicas=replicas)
    # Every process saves (others into their own temporary folder): with several JAX processes, saving
    # reads sharded arrays and takes all processes at once, so all must decide alike when to save
    # best.keras, from the same (the chief's) state.
    callbacks = [EpochLog(job.run_dir, len(splits.x_train), TEST_EACH_EPOCH_COLUMNS if config.test_each_epoch else []),
                 Checkpoints(job.run_dir, _best_val_accuracy(job.state_dir)), keras.callbacks.TerminateOnNaN(),
                 TimeEstimate(config.epochs - done, job.speed["device"]), StopOnInterrupt(job.interrupt)]  # last
    if config.test_each_epoch:  # benchmarks only; before EpochLog, which writes what it adds
        test_data = make_dataset(splits.x_test, splits.y_test, job.global_batch, num_classes=classes, shard=shard,
                                 replicas=replicas)
        callbacks.insert(0, TestEachEpoch(test_data))
    try:
        # verbose=2 (one line an epoch) when stdout is a file or a pipe: the bar's redraws would fill logs.
        history = model.fit(train_data, validation_data=val_data, epochs=config.epochs, initial_epoch=done,
                            callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2,
                            shuffle=False)  # the pipeline shuffles
    except KeyboardInterrupt:
        completed, _ = runs.latest_checkpoint(job.state_dir)
        if not completed:
            raise
        raise Interrupted(f"interrupted after {completed} completed epoch(s); everything up to there is saved. "
                          f"Resume with: alexnet train --resume {job.state_dir}") from None
    losses = history.history.get("loss", [])
    if not all(math.isfinite(v) for v in losses):  # TerminateOnNaN stopped the epoch
        completed, checkpoint = runs.latest_checkpoint(job.state_dir)
        logged = len(runs.read_history(job.run_dir))
        if checkpoint:
            kept = f"the last good checkpoint ({checkpoint}, epoch {completed}) is kept"
        elif logged:
            kept = (f"{logged} epoch(s) ran, but none had a finite validation loss, so there is no checkpoint")
        else:
            kept = "no epoch completed, so there is no checkpoint"
        raise AlexnetError(f"the training loss became NaN or infinite in epoch {done + len(losses)}; "
                           f"{kept}. Lower --lr (now {config.lr}) and start a new run.")


def _warn_if_diverged(val_loss, classes, lr):
    """Says so when the final validation loss is not finite or far above a chance-level guess's (ln classes)."""
    chance = math.log(classes)
    if not math.isfinite(val_loss) or val_loss > 3 * chance:
        print(f"warning: the final validation loss is {val_loss:.4g}, far above a chance-level guess's "
              f"({chance:.2f}): training diverged, and the saved models predict poorly. Lower --lr "
              f"(now {lr:g}) and start a new run.", file=sys.stderr)


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
    config, splits, run_dir = job.config, job.splits, job.run_dir
    runs.save_model_atomic(model, run_dir / "model.keras")  # every process: saving a sharded model is collective
    if job.distribution.shard[1] > 1:
        model = _local_copy(model)
    report = write_report(model, splits.x_test, splits.y_test, splits.class_names, run_dir,
                          log_dir=run_dir / "logs" / "test", step=config.epochs - 1, tta=config.tta)  # the last epoch
    metrics = {"test_loss": report["test_loss"], "test_accuracy": report["top1_accuracy"],
               "test_top5_accuracy": report.get("top5_accuracy"), "test_images": report["test_images"],
               "epochs": config.epochs}
    if "tta" in report:
        metrics |= {"tta_test_accuracy": report["tta"]["top1_accuracy"], "tta_test_loss": report["tta"]["test_loss"]}
    runs.write_json(run_dir / "metrics.json", metrics)
    history = runs.read_history(run_dir)
    smoothing = recipes.get(config.recipe).label_smoothing  # in loss and val_loss, not in test_loss
    if history:  # a worker that resumed a finished run trained no epoch here
        plots.training_curves(history, run_dir / "curves.png",
                              f"loss (with label smoothing {smoothing:g})" if smoothing else "loss")
        _warn_if_diverged(history[-1].get("val_loss", math.nan), len(splits.class_names), config.lr)
    print(f"Test accuracy {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f} "
          f"on {metrics['test_images']} images" + (" (cross-entropy without label smoothing)" if smoothing else ""))
    if "tta_test_accuracy" in metrics:
        print(f"With test-time augmentation (image and mirror averaged): accuracy "
              f"{metrics['tta_test_accuracy']:.4f}, loss {metrics['tta_test_loss']:.4f}")
    logs = f"; tensorboard --logdir {run_dir / 'logs'}" if (run_dir / "logs").is_dir() else \
        "; no TensorBoard logs: TensorFlow is not installed"
    print(f"Run folder: {run_dir}  (report.md{logs})")
    return metrics
