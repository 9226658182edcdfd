"""TrainConfig: the recipe's defaults under the user's flags, validation that needs no data, config.json round trip."""

import dataclasses
import subprocess
import sys

import pytest

from alexnet.errors import UsageError
from alexnet.settings import recipes
from alexnet.settings.config import TrainConfig


@pytest.mark.parametrize("settings,message", [
    ({"model": "vgg"}, "--model must be one of alexnet, alexnet-lrn, alexnet-torchvision. Received: 'vgg'"),
    ({"epochs": 0}, "--epochs must be a positive integer. Received: 0"),
    ({"val_size": -1}, "--val-size must be 0 (no validation: train on every training image) or a positive integer"),
    ({"recipe": "quick"}, "quick"),
    ({"backend": "mxnet"}, "--backend must be one of tensorflow, jax, torch"),
    ({"strategy": "ring"}, "--strategy must be one of"),
    ({"run_dir": "  "}, "--run-dir must name a folder"),
    ({"lr": 0.0}, "--lr must be a positive number"),
    ({"image_size": 66}, "the smallest that works is 67"),
    ({"storage_size": (32,)}, "--storage-size must be N or HxW"),
])
def test_validate_names_the_flag_and_the_value(settings, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**settings).validate()


def test_validate_needs_no_keras():
    """The CLI validates before it chooses the backend: settings must not load Keras."""
    code = ("import sys; from alexnet.settings.config import TrainConfig; TrainConfig(image_size=67).validate(); "
            "print('keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_from_flags_fills_the_recipe_and_scales_its_learning_rate():
    config = TrainConfig.from_flags({"recipe": "cpu", "batch_size": 128}).resolved()
    assert (config.image_size, config.epochs, config.tta) == (67, 4, True)
    assert config.lr == pytest.approx(0.05 * 128 / 256)
    assert TrainConfig.from_flags({"recipe": "cpu", "batch_size": 128, "lr": 0.3}).resolved().lr == 0.3
    assert TrainConfig.from_flags({}) == TrainConfig()  # the tutorial's settings
    assert (TrainConfig().resolved().epochs, TrainConfig().resolved().lr) == (50, 0.001)


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_the_recipe_is_the_one_source_of_its_defaults_however_the_config_is_built(name):
    recipe = recipes.RECIPES[name]
    direct = TrainConfig(recipe=name)
    assert direct == TrainConfig.from_flags({"recipe": name})
    replaced = dataclasses.replace(TrainConfig(), recipe=name)  # built from the tutorial's config
    validated = [direct.validate()] if recipe.image_size else []  # finetune needs --init-from (test_transfer.py)
    for config in (direct, replaced, *validated):
        resolved = config.resolved()
        assert (resolved.epochs, resolved.batch_size, resolved.image_size, resolved.tta) == \
            (recipe.epochs, recipe.batch_size, recipe.image_size, recipe.tta), config
        assert resolved.lr == pytest.approx(recipe.default_lr(recipe.batch_size))
    halved = dataclasses.replace(direct, batch_size=recipe.batch_size // 2).resolved()
    assert halved.lr == pytest.approx(recipe.default_lr(recipe.batch_size // 2))  # the rule follows the batch
    given = dataclasses.replace(direct, epochs=3, tta=False).resolved()
    assert (given.epochs, given.tta) == (3, False)  # what the user gives wins


def test_config_json_round_trip_and_unknown_keys():
    config = TrainConfig(storage_size=(48, 64), recipe="fast")
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UsageError, match=r"unknown settings \['colour'\]"):
        TrainConfig.from_dict({**config.to_dict(), "colour": "red"})
