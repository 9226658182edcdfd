import json

import keras
import numpy as np
import pytest

from alexnet.cli import main
from alexnet.errors import UsageError
from alexnet.model import compiling
from alexnet.model.builders import alexnet
from alexnet.settings import recipes
from alexnet.settings.config import TrainConfig


@pytest.mark.parametrize("given,expected", [
    ({}, {"epochs": 50, "batch_size": 32, "lr": 0.001}),  # the tutorial's
    ({"recipe": "fast"}, {"epochs": 30, "batch_size": 512, "lr": 0.1}),
    ({"recipe": "fast", "batch_size": 128}, {"batch_size": 128, "lr": 0.025}),  # linear scaling
    ({"recipe": "fast", "batch_size": 128, "lr": 0.3}, {"lr": 0.3}),  # a given --lr wins
    ({"recipe": "fast", "epochs": 5}, {"epochs": 5, "batch_size": 512}),
])
def test_recipe_defaults_and_the_flags_that_override_them(given, expected):
    config = TrainConfig.from_flags(given).resolved()
    for key, value in expected.items():
        assert getattr(config, key) == pytest.approx(value), key


def test_unknown_recipe():
    with pytest.raises(UsageError, match="--recipe must be one of tutorial, fast, cpu"):
        TrainConfig.from_flags({"recipe": "slow"})


def test_augmentation_is_active_in_training_only():
    model = alexnet(image_size=67, augmentation=compiling.augmentation("fast", seed=1))
    augment = model.get_layer("augment")
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(augment(x, training=False)), x)
    assert not np.array_equal(np.asarray(augment(x, training=True)), x)


def test_fast_recipe_compiles_with_smoothing_schedule_and_momentum():
    config = TrainConfig(recipe="fast", epochs=10, batch_size=64).resolved()
    model = compiling.compile_model(alexnet(image_size=67), config, steps_per_epoch=100)
    optimizer = model.optimizer
    assert optimizer.nesterov and optimizer.momentum == 0.9 and optimizer.weight_decay == 5e-4
    schedule = optimizer._learning_rate
    peak = config.lr
    assert float(schedule(0)) == pytest.approx(peak / 10)
    assert float(schedule(200)) == pytest.approx(peak)  # end of the 2-epoch warm-up
    assert float(schedule(1000)) == pytest.approx(0.0, abs=1e-6)  # cosine to zero at the end
    assert model.loss.get_config()["label_smoothing"] == 0.1


def test_cpu_recipe_runs_learns_and_reports_test_time_augmentation(cifar_slice, tmp_path):
    run_dir = tmp_path / "cpu"
    assert main(["train", "--recipe", "cpu", "--data", str(cifar_slice), "--epochs", "6", "--batch-size", "32",
                 "--limit-train", "900", "--limit-test", "300", "--run-dir", str(run_dir)]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["settings"]["recipe"] == "cpu" and config["settings"]["image_size"] == 67  # the recipe's size
    assert config["settings"]["tta"] is True and "label_smoothing" in config["recipe"]
    assert config["speed"]["device"] == "cpu" and config["speed"]["dtype_policy"] in ("float32", "mixed_bfloat16")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.2, metrics  # chance is 0.1
    assert metrics["tta_test_accuracy"] > 0.2, metrics
    report = json.loads((run_dir / "report.json").read_text())
    assert report["tta"]["top1_accuracy"] == metrics["tta_test_accuracy"]
    assert "test-time augmentation" in (run_dir / "report.md").read_text()
    losses = np.genfromtxt(run_dir / "history.csv", delimiter=",", names=True)["loss"]
    assert losses[-1] < losses[0] - 0.3
    # alexnet evaluate --tta reproduces both figures from the saved model
    assert main(["evaluate", str(run_dir), "--tta", "--out", str(tmp_path / "eval")]) == 0
    again = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert again["top1_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert again["tta"]["top1_accuracy"] == pytest.approx(metrics["tta_test_accuracy"])


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_is_described_and_compiles(name):
    recipe = recipes.RECIPES[name]
    config = TrainConfig(recipe=name, epochs=3).resolved()
    described = recipes.describe(name, config.batch_size, config.lr)
    assert {"optimizer", "schedule", "augmentation", "test_time_augmentation"} <= set(described)
    model = compiling.compile_model(alexnet(image_size=67, augmentation=compiling.augmentation(name, 0)), config, 10)
    optimizer = model.optimizer  # compiled as the recipe says
    assert (optimizer.momentum, optimizer.nesterov) == (recipe.momentum, recipe.nesterov)
    assert (optimizer.weight_decay or 0.0) == recipe.weight_decay
    first_lr = config.lr / 10 if recipe.warmup_epochs else config.lr
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(first_lr)
    loss = model.loss.get_config()
    assert loss.get("label_smoothing", 0.0) == recipe.label_smoothing
    assert ("Sparse" in type(model.loss).__name__) == (not recipe.one_hot)
    assert (compiling.augmentation(name, 0) is None) == (recipe.shift == 0 and not recipe.flip)


def test_cpu_recipe_warms_up_for_half_an_epoch():
    config = TrainConfig(recipe="cpu", epochs=4, batch_size=64).resolved()
    assert (config.image_size, config.epochs, config.tta) == (67, 4, True)
    model = compiling.compile_model(alexnet(image_size=67), config, steps_per_epoch=100)
    schedule = model.optimizer._learning_rate
    assert float(schedule(50)) == pytest.approx(config.lr)  # half an epoch: the peak
    assert float(schedule(400)) == pytest.approx(0.0, abs=1e-6)


def test_imagenet_recipe_is_the_papers_training():
    config = TrainConfig(recipe="imagenet").resolved()
    assert (config.epochs, config.batch_size, config.image_size) == (90, 128, 227)
    assert config.lr == pytest.approx(0.01) and TrainConfig(recipe="imagenet", batch_size=512).resolved().lr == \
        pytest.approx(0.04)  # scaled linearly with the batch
    assert (config.ten_crop, config.pca_lighting, config.tta) == (True, 0.1, False)
    model = compiling.compile_model(alexnet(image_size=67, num_classes=20), config, steps_per_epoch=10)
    optimizer = model.optimizer
    assert (optimizer.momentum, optimizer.nesterov, optimizer.weight_decay) == (0.9, False, 5e-4)
    schedule = optimizer._learning_rate  # divided by 10 after epochs 30, 60 and 80 of 90
    for step, lr in ((299, 0.01), (301, 0.001), (601, 1e-4), (801, 1e-5)):
        assert float(schedule(step)) == pytest.approx(lr), step
    augment = compiling.augmentation("imagenet", 0, in_pipeline=True, pca_lighting=0.1,
                                   colour_basis=([1.0, 0.5, 0.1], np.eye(3).tolist()))
    assert (augment.shift, augment.flip, augment.lighting) == (0.0, False, 0.1)  # the pipeline crops and flips
    assert compiling.augmentation("imagenet", 0, in_pipeline=True) is None


@pytest.mark.parametrize("classes,logged", [(10, True), (5, False)])
def test_top5_accuracy_is_a_metric_each_epoch_above_five_classes(classes, logged):
    model = compiling.compile_model(alexnet(image_size=67, num_classes=classes), TrainConfig(recipe="cpu"), 10)
    x = np.zeros((4, 32, 32, 3), np.uint8)
    y = np.eye(classes, dtype="float32")[[0, 1, 2, 3]]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert ("top5_accuracy" in logs) == logged


def test_ten_crop_and_pca_lighting_are_flags_the_recipe_defaults():
    from alexnet.cli import build_parser

    args = build_parser().parse_args(["train", "--recipe", "imagenet", "--no-ten-crop", "--pca-lighting", "0"])
    config = TrainConfig.from_flags({k: v for k, v in vars(args).items() if k not in ("command", "debug", "quiet")})
    assert (config.resolved().ten_crop, config.resolved().pca_lighting) == (False, 0.0)
    assert (TrainConfig(recipe="cpu").resolved().ten_crop, TrainConfig(recipe="cpu").resolved().pca_lighting) == \
        (False, 0.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--pca-lighting", "-0.1"])


def test_ema_averages_the_weights_and_only_use_average_puts_the_average_in_place():
    """Keras's `fit` puts the average in place at the end of every call; a resumed epoch is a call of its own, so
    training would go on from the average. Here it stays on the trained weights until `use_average`."""
    config = TrainConfig(recipe="cpu", epochs=2, ema=0.25)
    model = compiling.compile_model(alexnet(image_size=67, input_shape=(32, 32, 3)), config, steps_per_epoch=4)
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == pytest.approx(1 - 1 / (0.25 * 2 * 4))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 32, 32, 3)).astype("uint8")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 8)]
    for _ in range(2):  # two fit calls, as a mid-epoch resume makes
        model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    trained = [w.copy() for w in model.get_weights()]
    averages = [v.numpy() for v in model.optimizer._model_variables_moving_average]
    assert not all(np.array_equal(v.numpy(), a) for v, a in zip(model.trainable_variables, averages))
    compiling.use_average(model)
    assert all(np.array_equal(v.numpy(), a) for v, a in zip(model.trainable_variables, averages))
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), trained))
    plain = compiling.compile_model(alexnet(image_size=67), TrainConfig(recipe="cpu"), steps_per_epoch=4)
    assert not plain.optimizer.use_ema and recipes.describe("cpu", 256, 0.05).get("weight_average") is None
    assert "about the last 25% of the steps" in recipes.describe("cpu", 256, 0.05, ema=0.25)["weight_average"]
    with pytest.raises(UsageError, match="--ema must be a fraction"):
        TrainConfig(recipe="cpu", ema=1.5).validate()


def test_ema_under_float16_puts_the_average_in_place():
    """Under mixed_float16 `compile` wraps the SGD in a LossScaleOptimizer, whose own use_ema is False: `use_average`
    did nothing, and --ema trained on GPUs before Ampere (float16) kept the last weights without a word."""
    config = TrainConfig(recipe="cpu", epochs=2, ema=0.25)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        small = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu", name="fc1"),
                                  keras.layers.Dense(10, activation="softmax", dtype="float32", name="predictions")])
        model = compiling.compile_model(small, config, steps_per_epoch=4)  # what is tested is the optimizer
    finally:
        keras.config.set_dtype_policy(policy)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) and not model.optimizer.use_ema
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 16)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 8)]
    for _ in range(2):  # two fit calls, as a mid-epoch resume makes: neither puts the average in place
        model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    averages = [v.numpy() for v in model.optimizer.inner_optimizer._model_variables_moving_average]
    assert not all(np.array_equal(v.numpy(), a) for v, a in zip(model.trainable_variables, averages))
    compiling.use_average(model)
    assert all(np.array_equal(v.numpy(), a) for v, a in zip(model.trainable_variables, averages))
