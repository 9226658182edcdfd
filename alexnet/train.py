"""`alexnet train`: data -> splits -> model -> fit -> test -> the run folder."""

import time
from pathlib import Path

from alexnet import plots, runs
from alexnet.config import TrainConfig
from alexnet.errors import UsageError


def load_splits(config):
    """Loads the data and makes the splits that a config describes (training and evaluation share it)."""
    from alexnet.data import load_dataset
    from alexnet.splits import make_splits

    dataset = load_dataset(config.data, storage_size=config.storage_size, strict=config.strict)
    splits = make_splits(dataset, val_size=config.val_size, seed=config.seed,
                         limit_train=config.limit_train, limit_test=config.limit_test)
    return dataset, splits


def compile_model(model, config):
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=config.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def train(config: TrainConfig):
    """Runs one training run and returns (run folder, test metrics).

    The run folder gets config.json, samples.png, logs/ (TensorBoard),
    history.csv, model.keras, metrics.json and curves.png.

    Raises:
        UsageError: For settings that do not fit the data.
        AlexnetError: For data that cannot be read.
    """
    config.validate()
    import keras

    from alexnet.models import build_model
    from alexnet.pipeline import make_dataset

    keras.utils.set_random_seed(config.seed)
    dataset, splits = load_splits(config)
    if config.batch_size > len(splits.x_train):
        raise UsageError(f"--batch-size {config.batch_size} is larger than the training split "
                         f"({len(splits.x_train)} images): no full step could run. Use a smaller batch size.")
    run_dir = runs.new_run_dir(config.run_dir, config.model, overwrite=config.overwrite)
    print(f"Run folder: {run_dir}")
    data_info = {
        "source": dataset.source,
        "class_names": splits.class_names,
        "image_shape": list(splits.x_train.shape[1:]),
        "train": len(splits.x_train),
        "validation": len(splits.x_val),
        "test": len(splits.x_test),
        "test_images_also_in_training": splits.test_duplicates,
        "skipped_files": len(dataset.skipped),
    }
    runs.write_json(run_dir / "config.json",
                    {"settings": config.to_dict(), "data": data_info, "environment": runs.environment()})
    print(f"Data: {data_info['train']} train, {data_info['validation']} validation, {data_info['test']} test "
          f"images of {'x'.join(map(str, data_info['image_shape']))} from {dataset.source}")
    plots.sample_grid(splits.x_train, splits.y_train, splits.class_names, run_dir / "samples.png", seed=config.seed)

    model = build_model(config.model, input_shape=splits.x_train.shape[1:], num_classes=len(splits.class_names),
                        image_size=config.image_size)
    compile_model(model, config)
    model.summary()

    train_data = make_dataset(splits.x_train, splits.y_train, config.batch_size, shuffle=True, seed=config.seed)
    val_data = make_dataset(splits.x_val, splits.y_val, config.batch_size)
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), write_graph=False),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
        keras.callbacks.TerminateOnNaN(),
    ]
    started = time.perf_counter()
    model.fit(train_data, validation_data=val_data, epochs=config.epochs, callbacks=callbacks, verbose=1,
              shuffle=False)  # the pipeline shuffles
    train_seconds = time.perf_counter() - started

    model_path = run_dir / "model.keras"
    tmp = runs.atomic_target(model_path)
    model.save(tmp)
    Path(tmp).replace(model_path)

    test_loss, test_accuracy = model.evaluate(make_dataset(splits.x_test, splits.y_test, config.batch_size),
                                              verbose=0)
    metrics = {"test_loss": float(test_loss), "test_accuracy": float(test_accuracy),
               "test_images": len(splits.x_test), "train_seconds": round(train_seconds, 2)}
    runs.write_json(run_dir / "metrics.json", metrics)
    plots.training_curves(plots.read_history(run_dir / "history.csv"), run_dir / "curves.png")
    print(f"Test accuracy {test_accuracy:.4f}, test loss {test_loss:.4f} on {len(splits.x_test)} images")
    print(f"Run folder: {run_dir}  (tensorboard --logdir {run_dir / 'logs'})")
    return run_dir, metrics
