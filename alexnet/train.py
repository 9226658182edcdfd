"""`alexnet train`: data -> splits -> model -> fit -> test -> the run folder.

A run survives a crash: each completed epoch leaves a checkpoint, and
`alexnet train --resume RUN_DIR` continues from the last one.
"""

import csv
import dataclasses
import math
import shutil
import sys
import tempfile
from pathlib import Path

from alexnet import plots, runs
from alexnet.config import TrainConfig
from alexnet.errors import AlexnetError, Interrupted, UsageError


def load_splits(config):
    """Loads the data and makes the splits that a config describes (training and evaluation share it)."""
    from alexnet.data import load_dataset
    from alexnet.splits import make_splits

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
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow" and device == "cpu":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        return True
    return False


def _resume_config(run_dir, epochs):
    """The config of the run in run_dir (and its config.json), with --epochs changed if given.

    Refuses to extend a finished run unless --epochs says how far.
    """
    from alexnet.callbacks import latest_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / runs.RUN_MARKER).is_file():
        raise UsageError(f"--resume {run_dir}: not a run folder (no {runs.RUN_MARKER})")
    stored = runs.read_run_config(run_dir, "resumed")
    config = TrainConfig.from_dict(stored["settings"])
    done, _ = latest_checkpoint(run_dir)
    finished = done >= config.epochs and (run_dir / "metrics.json").is_file()
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
    stored["settings"] = config.to_dict()
    return config, stored


def _best_val_accuracy(run_dir):
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return -1.0
    with open(path, newline="") as f:
        values = [float(row["val_accuracy"]) for row in csv.DictReader(f) if row.get("val_accuracy")]
    return max([v for v in values if math.isfinite(v)], default=-1.0)


def train(config: TrainConfig = None, resume=None, epochs=None):
    """Runs (or resumes) a training run; see `_train`.

    Keras's global dtype policy and distribution are restored afterwards, so a
    caller's later models are not built under this run's settings.
    """
    from alexnet.backend import load_keras, select_backend

    if config is not None:
        select_backend(config.backend)  # before Keras loads
    keras = load_keras()
    policy, distribution = keras.config.dtype_policy(), keras.distribution.distribution()
    try:
        return _train(config, resume, epochs)
    finally:
        keras.config.set_dtype_policy(policy)
        keras.distribution.set_distribution(distribution)


def _train(config, resume, epochs):
    """Runs (or resumes) a training run and returns (run folder, test metrics).

    Args:
        config: the settings of a new run.
        resume: the folder of a run to continue instead; its own settings are used.
        epochs: with `resume`, a new total number of epochs.

    Raises:
        UsageError: For settings that do not fit the data or the run folder.
        AlexnetError: For data that cannot be read, or a loss that became NaN.
        Interrupted: On Ctrl-C, after saying how to resume.
    """
    from alexnet import recipes
    from alexnet.backend import load_keras, select_backend, speed_settings
    from alexnet.distribute import initialize_processes, plan

    config, stored = _resume_config(resume, epochs) if resume else (config.validate(), None)
    select_backend(config.backend)
    keras = load_keras()
    initialize_processes(config.strategy)  # multi-host JAX: before any other JAX call
    speed = speed_settings(config.jit, config.mixed_precision)
    distribution = plan(config.strategy, speed["gpus"])  # before other TensorFlow work, as tf.distribute asks
    # A resumed run must not change backend or strategy with the environment: record what was resolved.
    config = dataclasses.replace(config, backend=keras.backend.backend(), strategy=distribution.strategy)
    keras.config.set_dtype_policy(speed["dtype_policy"])
    deterministic = make_deterministic(config.seed, speed["device"])
    dataset, splits = load_splits(config)
    # What the step sees: the global batch, and the learning rate scaled with it.
    step_config = dataclasses.replace(config, batch_size=config.batch_size * distribution.replicas,
                                      lr=config.lr * distribution.replicas)
    if step_config.batch_size > len(splits.x_train):
        raise UsageError(f"--batch-size {config.batch_size} (global batch {step_config.batch_size}) is larger than "
                         f"the training split ({len(splits.x_train)} images): no full step could run. "
                         "Use a smaller batch size.")
    if not distribution.is_chief:  # other workers run every step but write to a folder of their own
        run_dir = Path(tempfile.mkdtemp(prefix="alexnet-worker-"))
        try:
            return _run(keras, config, step_config, dataset, splits, run_dir,
                        Path(config.run_dir) if resume else run_dir, speed, distribution)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
    if resume:
        run_dir = Path(config.run_dir)
        runs.write_json(run_dir / runs.RUN_MARKER, {**stored, "settings": config.to_dict()})
    else:
        run_dir = runs.new_run_dir(config.run_dir, config.model, overwrite=config.overwrite)
        data_info = {
            "source": dataset.source, "class_names": splits.class_names,
            "image_shape": list(splits.x_train.shape[1:]), "train": len(splits.x_train),
            "validation": len(splits.x_val), "test": len(splits.x_test),
            "test_images_also_in_training": splits.test_duplicates, "skipped_files": len(dataset.skipped),
        }
        runs.write_json(run_dir / runs.RUN_MARKER, {
            "settings": config.to_dict(), "data": data_info,
            "recipe": recipes.describe(config.recipe, step_config.batch_size, step_config.lr),
            "distribution": distribution.describe(config.batch_size, config.lr),
            "speed": {**speed, "op_determinism": deterministic}, "environment": runs.environment()})
        plots.sample_grid(splits.x_train, splits.y_train, splits.class_names, run_dir / "samples.png",
                          seed=config.seed)
    return _run(keras, config, step_config, dataset, splits, run_dir, run_dir, speed, distribution)


def _run(keras, config, step_config, dataset, splits, run_dir, checkpoint_dir, speed, distribution):
    """Builds (or restores) the model and trains it; writes into run_dir, resumes from checkpoint_dir."""
    from alexnet import recipes
    from alexnet.callbacks import (TEST_EACH_EPOCH_COLUMNS, Checkpoints, EpochLog, TimeEstimate, latest_checkpoint,
                                   trim_logs)
    from alexnet.models import build_model

    print(f"Run folder: {run_dir}")
    print(f"Backend {keras.backend.backend()} on {speed['device']}"
          f"{' x' + str(speed['gpus']) if speed['gpus'] else ''}, {speed['dtype_policy']}, "
          f"XLA {'on' if speed['jit'] else 'off'}; recipe {config.recipe}, batch {config.batch_size}, lr {config.lr:g}")
    if distribution.strategy != "none":
        print(f"Strategy {distribution.strategy}: {distribution.replicas} replicas, {distribution.worker}; "
              f"global batch {step_config.batch_size} ({config.batch_size} per replica), "
              f"lr {step_config.lr:g} (linear scaling: {config.lr:g} x {distribution.replicas})")
    print(f"Data: {len(splits.x_train)} train, {len(splits.x_val)} validation, {len(splits.x_test)} test images "
          f"of {'x'.join(map(str, splits.x_train.shape[1:]))} from {dataset.source}")

    with distribution.scope():
        model = build_model(config.model, input_shape=splits.x_train.shape[1:],
                            num_classes=len(splits.class_names), image_size=config.image_size,
                            augmentation=recipes.augmentation(config.recipe, config.seed))
        recipes.compile_model(model, step_config, recipes.steps_per_epoch(len(splits.x_train),
                                                                          step_config.batch_size), jit=speed["jit"])
        done, checkpoint = latest_checkpoint(checkpoint_dir)
        if run_dir == checkpoint_dir:
            trim_logs(run_dir, done)  # epochs logged after the checkpoint was taken are run again
        if checkpoint is not None:
            print(f"Resuming after epoch {done} of {config.epochs} from {checkpoint}")
            model.optimizer.build(model.trainable_variables)
            model.load_weights(checkpoint)  # the model's weights and the optimizer's state (step, momentum)
        else:
            model.summary()

    if done < config.epochs:
        # Every process saves (others into their own temporary folder): with several JAX processes, saving
        # reads sharded arrays and takes all processes at once, so all must decide alike when to save
        # best.keras, from the same (the chief's) history.
        callbacks = [EpochLog(run_dir, len(splits.x_train), TEST_EACH_EPOCH_COLUMNS if config.test_each_epoch else []),
                     Checkpoints(run_dir, _best_val_accuracy(checkpoint_dir)), keras.callbacks.TerminateOnNaN(),
                     TimeEstimate(config.epochs - done, speed["device"])]
        _fit(model, step_config, splits, checkpoint_dir, done, callbacks, distribution.shard)
    return run_dir, _finish(model, step_config, splits, run_dir, multi_process=distribution.shard[1] > 1)


def _fit(model, config, splits, run_dir, done, callbacks, shard=(0, 1)):
    from alexnet.pipeline import make_dataset
    from alexnet.recipes import uses_one_hot

    # A resumed run shuffles with another seed, so it does not replay the first epochs' orders.
    from alexnet.callbacks import TestEachEpoch

    classes = len(splits.class_names) if uses_one_hot(config.recipe) else None
    train_data = make_dataset(splits.x_train, splits.y_train, config.batch_size, shuffle=True,
                              seed=config.seed + done, num_classes=classes, shard=shard)
    val_data = make_dataset(splits.x_val, splits.y_val, config.batch_size, num_classes=classes, shard=shard)
    if config.test_each_epoch:
        test_data = make_dataset(splits.x_test, splits.y_test, config.batch_size, num_classes=classes)
        callbacks = [TestEachEpoch(test_data), *callbacks]
    resume_hint = f"alexnet train --resume {run_dir}"
    try:
        # verbose=2 (one line an epoch) when stdout is a file or a pipe: the bar's redraws would fill logs.
        history = model.fit(train_data, validation_data=val_data, epochs=config.epochs, initial_epoch=done,
                            callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2,
                            shuffle=False)  # the pipeline shuffles
    except KeyboardInterrupt:
        from alexnet.callbacks import latest_checkpoint

        completed, _ = latest_checkpoint(run_dir)
        raise Interrupted(f"interrupted after {completed} completed epoch(s); everything up to there is saved. "
                          f"Resume with: {resume_hint}") from None
    losses = history.history.get("loss", [])
    if not all(math.isfinite(v) for v in losses):  # TerminateOnNaN stopped the epoch
        from alexnet.callbacks import latest_checkpoint

        completed, checkpoint = latest_checkpoint(run_dir)
        kept = f"the last good checkpoint ({checkpoint}, epoch {completed}) is kept" if checkpoint \
            else "no epoch completed, so there is no checkpoint"
        raise AlexnetError(f"the training loss became NaN or infinite in epoch {done + len(losses)}; "
                           f"{kept}. Lower --lr (now {config.lr}) and start a new run.")


def _local_copy(model):
    """The model with its (replicated) weights on this process's devices alone.

    With several JAX processes, predictions come back as arrays spread over
    every process, which no process can read; each process evaluates the test
    split on its own copy instead (only the chief's report is kept).
    """
    import keras

    keras.distribution.set_distribution(None)
    local = keras.models.clone_model(model)
    local.set_weights(model.get_weights())
    return local


def _finish(model, config, splits, run_dir, multi_process=False):
    """Writes the final model, the test metrics, the evaluation report and the curves."""
    from alexnet.callbacks import save_model_atomic
    from alexnet.report import write_report

    save_model_atomic(model, run_dir / "model.keras")  # every process: saving a sharded model is collective
    if multi_process:
        model = _local_copy(model)
    report = write_report(model, splits.x_test, splits.y_test, splits.class_names, run_dir,
                          log_dir=run_dir / "logs" / "test", step=config.epochs, tta=config.tta)
    metrics = {"test_loss": report["test_loss"], "test_accuracy": report["top1_accuracy"],
               "test_top5_accuracy": report.get("top5_accuracy"), "test_images": report["test_images"],
               "epochs": config.epochs}
    if "tta" in report:
        metrics |= {"tta_test_accuracy": report["tta"]["top1_accuracy"], "tta_test_loss": report["tta"]["test_loss"]}
    runs.write_json(run_dir / "metrics.json", metrics)
    if (run_dir / "history.csv").is_file():  # a worker that resumed a finished run trained no epoch here
        plots.training_curves(plots.read_history(run_dir / "history.csv"), run_dir / "curves.png")
    print(f"Test accuracy {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f} "
          f"on {metrics['test_images']} images")
    if "tta_test_accuracy" in metrics:
        print(f"With test-time augmentation (image and mirror averaged): accuracy "
              f"{metrics['tta_test_accuracy']:.4f}, loss {metrics['tta_test_loss']:.4f}")
    logs = f"; tensorboard --logdir {run_dir / 'logs'}" if (run_dir / "logs").is_dir() else \
        "; no TensorBoard logs: TensorFlow is not installed"
    print(f"Run folder: {run_dir}  (report.md{logs})")
    return metrics
