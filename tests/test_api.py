"""The public Python API (`import alexnet`): cheap to import, documented, and working when called from Python."""

import csv
import importlib.util
import inspect
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_SETTINGS
from PIL import Image

import alexnet
from alexnet import TrainConfig, UsageError

FUNCTIONS = ["train", "resume", "evaluate", "predict", "export", "load_dataset", "load_splits", "build_model",
             "alexnet", "alexnet_lrn", "alexnet_torchvision", "import_weights"]
SETTINGS = {**TINY_SETTINGS, "limit_train": 64, "limit_test": 40, "epochs": 1}  # one epoch of 2 steps


def test_importing_the_package_loads_neither_keras_nor_tensorflow():
    code = ("import sys, alexnet; alexnet.TrainConfig; alexnet.train; alexnet.load_splits; alexnet.UsageError; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_is_documented(name):
    doc = inspect.getdoc(getattr(alexnet, name))
    assert doc and "Returns:" in doc and "Raises:" in doc, name
    if name not in ("alexnet_lrn", "alexnet_torchvision"):  # they document their arguments by pointing at alexnet's
        assert "Args:" in doc, name


def test_names_survive_their_modules_being_imported():
    import alexnet.results.evaluation  # noqa: F401  (a module import sets an attribute on the package)
    import alexnet.results.exporting  # noqa: F401
    import alexnet.results.prediction  # noqa: F401
    import alexnet.training.start  # noqa: F401

    for name in ("train", "resume", "evaluate", "predict", "export"):
        assert inspect.isfunction(getattr(alexnet, name)), name
    assert set(alexnet.__all__) <= set(dir(alexnet))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        alexnet.nope


def test_bad_arguments_are_usage_errors_that_are_also_value_errors(tmp_path):
    for call in (lambda: alexnet.build_model("vgg"), lambda: alexnet.alexnet(image_size=32),
                 lambda: alexnet.train({"epochs": 1}), lambda: alexnet.resume(tmp_path),
                 lambda: alexnet.load_dataset(str(tmp_path / "missing")),
                 lambda: alexnet.train(TrainConfig(epochs=0))):
        with pytest.raises(UsageError) as caught:
            call()
        assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)


def test_load_splits_as_train_makes_them(cifar_slice, tmp_path, monkeypatch):
    from alexnet.training import job

    made = []
    real = job.splits_for
    monkeypatch.setattr(job, "splits_for", lambda config: made.append(real(config)) or made[-1])
    settings = dict(SETTINGS, val_size=100, seed=3, limit_test=50, limit_train=None)
    alexnet.train(TrainConfig(data=str(cifar_slice), run_dir=str(tmp_path / "run"), **settings))
    [trained] = made  # what the run trained and tested on
    splits = alexnet.load_splits(str(cifar_slice), val_size=100, seed=3, limit_test=50)
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (900, 100, 50)
    assert splits.x_train.dtype == np.uint8 and splits.x_train.shape[1:] == (32, 32, 3)
    assert not set(splits.train_index) & set(splits.val_index) and splits.test_duplicates == 0
    for part in ("train_index", "val_index", "test_index", "y_train", "y_test"):
        np.testing.assert_array_equal(getattr(splits, part), getattr(trained, part), err_msg=part)
    np.testing.assert_array_equal(splits.x_test, trained.x_test)


@pytest.fixture(scope="module")
def run(cifar_slice, tmp_path_factory):
    return alexnet.train(TrainConfig(data=str(cifar_slice), run_dir=str(tmp_path_factory.mktemp("api") / "run"),
                                     **SETTINGS))


def test_train_evaluate_predict_resume_from_python(run, cifar_slice, tmp_path):
    assert isinstance(run, alexnet.Run) and (run.run_dir / "model.keras").is_file()
    assert run.metrics["test_images"] == 40
    report = alexnet.evaluate(run.run_dir)
    assert report["top1_accuracy"] == pytest.approx(run.metrics["test_accuracy"], abs=1e-6)
    cat = next((cifar_slice / "test" / "cat").iterdir())
    Image.open(cat).save(tmp_path / "cat.png")
    [answer] = alexnet.predict(run.run_dir, [tmp_path / "cat.png"], top_k=2)
    classes = sorted(p.name for p in (cifar_slice / "train").iterdir())
    assert [p["class"] in classes for p in answer["predictions"]] == [True, True]
    resumed = alexnet.resume(run.run_dir, epochs=2)
    with open(resumed.run_dir / "history.csv", newline="") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_train_then_resume_in_fresh_processes_on_the_runs_own_backend(backend, cifar_slice, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    run_dir = tmp_path / f"{backend}-run"
    settings = dict(SETTINGS, data=str(cifar_slice), run_dir=str(run_dir), backend=backend)
    first = f"import alexnet; alexnet.train(alexnet.TrainConfig(**{settings!r}))"
    subprocess.run([sys.executable, "-c", first], check=True, capture_output=True, env=_without_backend())
    then = ("import alexnet; run = alexnet.resume(%r, epochs=2); import keras; "  # keras after: resume chooses
            "print(keras.backend.backend(), run.metrics['test_images'])" % str(run_dir))
    done = subprocess.run([sys.executable, "-c", then], check=True, capture_output=True, text=True,
                          env=_without_backend())
    assert done.stdout.strip().splitlines()[-1] == f"{backend} 40"


def _without_backend():
    import os

    return {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
