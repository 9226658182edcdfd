"""End to end on a generated mini-ImageNet: the `imagenet` recipe streams, trains, reports top-5 and the 10-crop test."""

import csv
import importlib.util
import json

import pytest
from conftest import run_cli
from imagenet_helpers import CLASSES, make_mini_imagenet

from alexnet.cli import main

pytestmark = pytest.mark.slow
# 67 px (the smallest AlexNet takes), batch 8: one epoch of 42 training images is 5 steps.
IMAGENET_RUN = ["--recipe", "imagenet", "--image-size", "67", "--epochs", "1", "--batch-size", "8", "--val-size", "6"]


def _check_run(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    data, recipe = config["data"], config["recipe"]
    assert data["streamed"] is True and data["transforms"]["train"]["crop"] == "random-resized"
    assert data["class_names"][:2] == ["tench", "goldfish"] and data["class_ids"] == sorted(CLASSES)
    assert (data["train"], data["validation"], data["test"]) == (42, 6, 18)
    assert recipe["optimizer"] == "SGD momentum 0.9, weight decay 0.0005" and "PCA lighting" in recipe["augmentation"]
    with open(run_dir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and 0 <= float(rows[0]["val_top5_accuracy"]) <= 1 and "top5_accuracy" in rows[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_accuracy", "test_top5_accuracy", "ten_crop_test_accuracy", "ten_crop_test_top5_accuracy"):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["test_images"] == 18
    return metrics


def test_the_imagenet_recipe_on_the_kaggle_layout_trains_tests_ten_crops_and_predicts_names(tmp_path, capsys):
    data = tmp_path / "imagenet"
    make_mini_imagenet(data, "kaggle")
    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(data), *IMAGENET_RUN, "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "(streamed: random-resized for training)" in out and "10-crop test (corners, centre, mirrors" in out
    metrics = _check_run(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["ten_crop"]["top1_accuracy"] == metrics["ten_crop_test_accuracy"]
    assert "10-crop test" in (run_dir / "report.md").read_text()

    val = sorted((data / "ILSVRC" / "Data" / "CLS-LOC" / "val").iterdir())[0]
    assert main(["predict", str(run_dir), str(val), "--top-k", "6", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)[0]
    assert {p["class"] for p in answer["predictions"]} == {"tench", "goldfish", "crane (n02012849)",
                                                          "Shetland sheepdog", "crane (n03126707)", "wing"}


def test_the_imagenet_recipe_on_the_folders_layout_trains_on_jax(tmp_path):
    if importlib.util.find_spec("jax") is None or importlib.util.find_spec("grain") is None:
        pytest.skip("jax or grain is not installed (pip install -e '.[jax]')")
    data = tmp_path / "imagenet"
    make_mini_imagenet(data, "folders")
    run_dir = tmp_path / "run"
    env = {"ALEXNET_STREAM_WORKERS": "2", "ALEXNET_CACHE_DIR": str(tmp_path / "cache")}
    done = run_cli("train", "--backend", "jax", "--data", data, *IMAGENET_RUN, "--run-dir", run_dir, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "val/ is the test split and test/ is ignored" in done.stderr
    metrics = _check_run(run_dir)
    again = run_cli("evaluate", run_dir, "--backend", "jax", "--ten-crop", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((run_dir / "evaluation" / "report.json").read_text())
    assert report["ten_crop"]["top1_accuracy"] == pytest.approx(metrics["ten_crop_test_accuracy"])
