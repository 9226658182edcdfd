"""End to end: a run that streams its image folder from disk trains, resumes, evaluates, predicts and exports."""

import csv
import importlib.util
import json

import pytest
from conftest import TINY, run_cli

from alexnet.cli import main

# The tiny run with more images (enough batches to see a stream's order), at a faster rate.
STREAMED = [*TINY, "--limit-train", "300", "--val-size", "60", "--limit-test", "90", "--lr", "0.01"]


def _epochs(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


def test_a_streamed_run_trains_resumes_evaluates_predicts_and_exports(cifar_slice, tmp_path, capsys):
    import keras

    from alexnet.settings.choices import FORMATS

    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(cifar_slice), "--epochs", "2", "--stream", *STREAMED, "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "(streamed: resize for training)" in out and "bytes an image" in out
    data = json.loads((run_dir / "config.json").read_text())["data"]
    assert data["streamed"] is True and (data["train"], data["validation"], data["test"]) == (300, 60, 90)
    assert data["image_shape"] == [32, 32, 3] and 0 < data["index_bytes_per_image"] < 100
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_images"] == 90 and metrics["test_accuracy"] > 0.1  # chance is 0.1 (CIFAR-10 classes)

    assert main(["evaluate", str(run_dir)]) == 0  # from the files again, as the run tested
    report = json.loads((run_dir / "evaluation" / "report.json").read_text())
    assert report["test_images"] == 90 and report["top1_accuracy"] == pytest.approx(metrics["test_accuracy"])

    cat = next((cifar_slice / "test" / "cat").iterdir())
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(cat), "--top-k", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"{cat}: ")

    fmt = next(name for name, spec in FORMATS.items() if keras.backend.backend() in spec.backends)
    if all(importlib.util.find_spec(m) for m in (FORMATS[fmt].runtime_module, *FORMATS[fmt].converters)):
        assert main(["export", str(run_dir), "--format", fmt, "--check-images", "16"]) == 0

    assert main(["train", "--resume", str(run_dir), "--epochs", "3"]) == 0
    assert _epochs(run_dir) == ["0", "1", "2"]


def test_a_folder_over_the_memory_budget_streams_on_jax_with_grain_worker_processes(cifar_slice, tmp_path):
    if importlib.util.find_spec("jax") is None or importlib.util.find_spec("grain") is None:
        pytest.skip("jax or grain is not installed (pip install -e '.[jax]')")
    run_dir = tmp_path / "run"
    # 1,300 images of 32x32x3 need 8 MB while decoding: over a 4 MB budget, so the run streams by itself.
    env = {"ALEXNET_STREAM_WORKERS": "2", "ALEXNET_MEMORY_BUDGET": "4M", "ALEXNET_CACHE_DIR": str(tmp_path / "cache")}
    done = run_cli("train", "--backend", "jax", "--data", cifar_slice, "--epochs", "1", *STREAMED, "--run-dir", run_dir,
                   env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "would not fit in memory" in done.stderr and "streaming them from disk" in done.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    again = run_cli("evaluate", run_dir, "--backend", "jax", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((run_dir / "evaluation" / "report.json").read_text())
    assert report["top1_accuracy"] == pytest.approx(metrics["test_accuracy"]) and report["test_images"] == 90


def test_strict_stops_a_streamed_run_at_an_unreadable_file_and_names_it(cifar_slice, tmp_path, capsys):
    import shutil

    folder = tmp_path / "data"
    shutil.copytree(cifar_slice, folder)
    broken = sorted((folder / "train" / "dog").iterdir())[0]
    broken.write_bytes(b"\xff\xd8\xff truncated")
    command = ["train", "--data", str(folder), "--epochs", "1", "--stream", *STREAMED, "--limit-train", "900", "--run-dir"]
    assert main([*command, str(tmp_path / "lenient")]) == 0  # skipped, named, counted
    err = capsys.readouterr().err
    assert f"skipped {broken}" in err and "file(s) could not be read in epoch 1 and were skipped" in err
    assert main([*command, str(tmp_path / "strict"), "--strict"]) == 1
    assert f"alexnet: error: cannot read {broken}" in capsys.readouterr().err
