"""End to end: the `alexnet` command on a real slice of CIFAR-10."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from alexnet.cli import main
from alexnet.results.prediction import predict

RUN_FILES = ["config.json", "history.csv", "model.keras", "best.keras", "metrics.json", "samples.png", "curves.png",
             "report.json", "report.md", "confusion.png", "mistakes.png", "checkpoints/epoch-0002.keras"]


def _scalars(log_dir):
    """Reads {tag: [value per step]} from the TensorBoard event files in log_dir."""
    import tensorflow as tf

    values = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    return values


@pytest.fixture(scope="module")
def trained_run(cifar_slice, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "small"
    code = main(["train", "--data", str(cifar_slice), "--epochs", "2", "--limit-train", "450", "--limit-test", "200",
                 "--image-size", "67", "--lr", "0.01", "--batch-size", "32", "--checkpoint-gap", "0",
                 "--run-dir", str(run_dir)])
    assert code == 0
    return run_dir


def test_train_writes_the_whole_run_folder(trained_run):
    for name in RUN_FILES:
        assert (trained_run / name).is_file() and (trained_run / name).stat().st_size > 0, name
    config = json.loads((trained_run / "config.json").read_text())
    assert config["settings"]["epochs"] == 2 and config["settings"]["image_size"] == 67
    assert config["data"]["train"] == 450 and config["data"]["validation"] == 50 and config["data"]["test"] == 200
    assert config["environment"]["backend"] == (os.environ.get("KERAS_BACKEND") or "tensorflow")
    assert config["environment"]["keras"]
    history = (trained_run / "history.csv").read_text().splitlines()
    assert history[0].split(",") == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss", "seconds",
                                        "images_per_s", "top5_accuracy", "val_top5_accuracy"]  # 10 classes
    assert len(history) == 3  # header + one row an epoch
    metrics = json.loads((trained_run / "metrics.json").read_text())
    report = json.loads((trained_run / "report.json").read_text())
    assert metrics["test_images"] == 200
    assert metrics["test_accuracy"] * 200 == pytest.approx(round(metrics["test_accuracy"] * 200))  # images right
    assert (metrics["test_accuracy"], metrics["test_loss"]) == (report["top1_accuracy"], report["test_loss"])
    assert sorted(p.name for p in (trained_run / "checkpoints").iterdir() if not p.name.startswith("best-")) == [
        "epoch-0001.json", "epoch-0001.keras", "epoch-0002.json", "epoch-0002.keras", "state.json"]
    for name in ("samples.png", "curves.png", "confusion.png", "mistakes.png"):
        with Image.open(trained_run / name) as image:
            assert image.format == "PNG" and image.width > 300


def test_tensorboard_logs_hold_the_curves_with_top5(trained_run):
    train = _scalars(trained_run / "logs" / "train")
    validation = _scalars(trained_run / "logs" / "validation")
    for scalars in (train, validation):
        assert len(scalars["epoch_loss"]) == 2 and len(scalars["epoch_accuracy"]) == 2
    history = np.genfromtxt(trained_run / "history.csv", delimiter=",", names=True)
    np.testing.assert_allclose(validation["epoch_accuracy"], history["val_accuracy"], rtol=1e-6)
    np.testing.assert_allclose(validation["epoch_top5_accuracy"], history["val_top5_accuracy"], rtol=1e-6)


def test_report_holds_per_class_figures_and_the_confusion_matrix(trained_run):
    report = json.loads((trained_run / "report.json").read_text())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert report["top1_accuracy"] == metrics["test_accuracy"]
    assert report["top1_accuracy"] <= report["top5_accuracy"]  # the top-1 class is among the top 5
    assert report["top5_accuracy"] * 200 == pytest.approx(round(report["top5_accuracy"] * 200))
    confusion = np.array(report["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == 200
    assert np.trace(confusion) == round(report["top1_accuracy"] * 200)
    assert set(report["per_class"]) == set(report["class_names"])
    assert sum(c["support"] for c in report["per_class"].values()) == 200
    markdown = (trained_run / "report.md").read_text()
    assert "| airplane |" in markdown and "top-5 accuracy" in markdown
    images = _image_tags(trained_run / "logs" / "test")
    # Under a group that TensorBoard sorts after the epoch_* scalars, so loss and accuracy come first.
    assert {"test_report/confusion_matrix", "test_report/mistakes"} <= images
    assert sorted(["epoch_loss", "epoch_accuracy", *images])[-1].startswith("test_report/")


def _image_tags(log_dir):
    import tensorflow as tf

    tags = set()
    for path in log_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {value.tag for value in event.summary.value}
    return tags


def test_evaluate_reproduces_the_test_accuracy(trained_run, tmp_path, capsys):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert main(["evaluate", str(trained_run), "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert f"Test accuracy {metrics['test_accuracy']:.4f}" in out and "on 200 images" in out
    again = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert again["confusion_matrix"] == json.loads((trained_run / "report.json").read_text())["confusion_matrix"]


def test_evaluate_out_naming_a_file_is_refused_with_its_name(trained_run, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    assert main(["evaluate", str(trained_run), "--out", str(taken)]) == 2
    assert f"--out {taken}: is a file; give a folder for the report" in capsys.readouterr().err
    assert taken.read_text() == "keep me"
    assert main(["evaluate", str(trained_run), "--out", str(taken / "below")]) == 2
    assert f"cannot write the evaluation into {taken / 'below'}: Not a directory" in capsys.readouterr().err


def test_evaluate_a_model_file_on_other_data(trained_run, cifar_slice, tmp_path, capsys):
    assert main(["evaluate", str(trained_run / "best.keras"), "--data", str(cifar_slice),
                 "--limit-test", "50", "--out", str(tmp_path)]) == 0
    assert "on 50 images" in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["test_images"] == 50


def test_predict_answers_every_image_and_reports_bad_files(trained_run, cifar_slice, tmp_path, capsys):
    gray = tmp_path / "big-gray.png"
    Image.fromarray(np.full((100, 60), 128, dtype=np.uint8)).save(gray)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    cat = next((cifar_slice / "test" / "cat").iterdir())
    code = main(["predict", str(trained_run), str(cat), str(bad), str(gray), "--json", "--top-k", "3"])
    captured = capsys.readouterr()
    assert code == 1  # one file failed
    results = json.loads(captured.out)
    assert [r["file"] for r in results] == [str(cat), str(bad), str(gray)]
    assert "error" in results[1] and "not a readable image" in captured.err
    for result in (results[0], results[2]):
        probabilities = [p["probability"] for p in result["predictions"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert {p["class"] for p in result["predictions"]} <= set(json.loads(
            (trained_run / "report.json").read_text())["class_names"])


def test_predict_walks_a_folder_in_batches_and_answers_as_for_its_files(trained_run, cifar_slice, tmp_path, capsys):
    folder = tmp_path / "photos"
    for name in ("cat", "dog"):
        shutil.copytree(cifar_slice / "test" / name, folder / name)
    files = sorted(str(p) for p in folder.rglob("*.jpg"))
    assert main(["predict", str(trained_run), str(folder), "--json"]) == 0
    by_folder = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in by_folder] == files  # every image once, sorted
    assert predict(trained_run, files[:7], batch_size=3) == by_folder[:7]  # the same answers in batches of 3



def test_a_folder_that_holds_a_run_is_not_overwritten(trained_run, cifar_slice, capsys):
    before = (trained_run / "metrics.json").read_text()
    code = main(["train", "--data", str(cifar_slice), "--run-dir", str(trained_run), "--epochs", "1",
                 "--image-size", "67", "--limit-train", "100"])
    assert code == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (trained_run / "metrics.json").read_text() == before


@pytest.mark.parametrize("argv,code,message", [
    (["train", "--epochs", "0"], 2, "--epochs: must be a positive integer"),
    (["train", "--lr", "-1"], 2, "--lr: must be a positive number"),
    (["train", "--seed", "-3"], 2, "--seed: must be a non-negative integer"),
    (["train", "--model", "vgg"], 2, "invalid choice: 'vgg'"),
    (["train", "--image-size", "50"], 2, "the smallest that works is 67"),
    (["train", "--data", "/does/not/exist"], 2, "no such file or folder"),
    (["evaluate", "/does/not/exist"], 2, "no such run folder or model file"),
    (["train", "--run-dir", ""], 2, "--run-dir must name a folder. Received: an empty name"),
    (["train", "--run-dir", "  "], 2, "--run-dir must name a folder. Received: an empty name"),
    (["samples", "--out", "/does/not/exist/x.png"], 2, "--out /does/not/exist/x.png: the folder /does/not/exist does "
                                                        "not exist"),
])
def test_usage_errors(argv, code, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        result = main(argv)
        raise SystemExit(result)
    assert exit_info.value.code == code
    assert message in capsys.readouterr().err


def test_batch_larger_than_training_split(cifar_slice, tmp_path, capsys):
    code = main(["train", "--data", str(cifar_slice), "--limit-train", "20", "--batch-size", "64",
                 "--image-size", "67", "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "larger than the training split (20 images)" in capsys.readouterr().err


def test_summary_prints_the_parameter_count(capsys):
    assert main(["summary"]) == 0
    assert "alexnet: 58,327,818 parameters at 227x227x3, 10 classes" in capsys.readouterr().out


def test_samples_draws_a_grid(cifar_slice, tmp_path):
    out = tmp_path / "grid.png"
    assert main(["samples", "--data", str(cifar_slice), "--out", str(out), "--count", "8"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_console_errors_are_one_line_without_traceback(tmp_path):
    result = run_cli("evaluate", tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"alexnet: error: {tmp_path} is not a run folder (no config.json); give a run folder or a .keras file"]
    assert "Traceback" not in result.stderr


def test_a_missing_backend_names_the_install_command(monkeypatch):
    import importlib.util

    from alexnet import backend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ValueError, match=r'the torch backend is not installed; install it with: pip install -e ".\[torch\]"'):
        backend.select_backend("torch")


def test_keras_backend_variable_naming_a_missing_backend(tmp_path):
    code = ("import sys; sys.modules['jax'] = None\n"  # makes `import jax` fail as if it were not installed
            "from alexnet.cli import main; sys.exit(main(['summary']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'alexnet: error: the jax backend is not installed; install it with: pip install -e ".[jax]" '
        '(or pip install jax) (KERAS_BACKEND=jax)']


def test_evaluate_on_other_data_keeps_the_runs_own_report(trained_run, cifar_slice, tmp_path, capsys):
    """evaluation/ holds the report of the run's own test split and is never replaced by another one."""
    import shutil

    other = tmp_path / "only-test"
    shutil.copytree(cifar_slice / "test", other / "test")  # evaluation needs no train/ folder
    assert main(["evaluate", str(trained_run)]) == 0  # the run's own split (--limit-test 200): evaluation/
    own = json.loads((trained_run / "evaluation" / "report.json").read_text())
    assert own["test_images"] == 200
    assert main(["evaluate", str(trained_run), "--data", str(cifar_slice)]) == 0  # all of its data: another split
    whole = json.loads((trained_run / f"evaluation-{cifar_slice.name}" / "report.json").read_text())
    assert whole["test_images"] == 300
    assert main(["evaluate", str(trained_run), "--limit-test", "100"]) == 0  # another sample of its data
    assert json.loads((trained_run / f"evaluation-{cifar_slice.name}-100" / "report.json").read_text())[
        "test_images"] == 100
    assert main(["evaluate", str(trained_run / "best.keras"), "--data", str(other), "--limit-test", "40"]) == 0
    assert "on 40 images" in capsys.readouterr().out
    assert json.loads((trained_run / "evaluation-only-test-40" / "report.json").read_text())["test_images"] == 40
    assert json.loads((trained_run / "evaluation" / "report.json").read_text()) == own


def test_config_records_the_code_that_made_the_run(trained_run):
    from alexnet import __version__

    environment = json.loads((trained_run / "config.json").read_text())["environment"]
    assert environment["alexnet"] == __version__
    assert "git_commit" in environment  # a commit hash in a checkout, None in an installed package


def test_evaluate_an_unfinished_run_uses_its_best_model(trained_run, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "unfinished"
    shutil.copytree(trained_run, run_dir)
    (run_dir / "model.keras").unlink()
    assert main(["evaluate", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "has no model.keras (the run did not finish); using its best model" in captured.err
    assert (run_dir / "evaluation" / "report.json").is_file()


def test_keras_backend_variable_with_an_unknown_name():
    result = run_cli("summary", env={"KERAS_BACKEND": "nonsense"}, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "alexnet: error: KERAS_BACKEND=nonsense is not a backend alexnet runs on; set it to one of "
        "tensorflow, jax, torch, or unset it (TensorFlow is the default)"]


@pytest.mark.parametrize("argv", [["--debug", "train", "--data", "/does/not/exist"],
                                  ["train", "--data", "/does/not/exist", "--debug"]])  # global flags anywhere
def test_debug_adds_the_traceback_and_keeps_the_exit_status(argv, capsys):
    assert main(argv) == 2  # a usage error, with or without --debug
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "UsageError" in err
    assert err.strip().splitlines()[-1] == ("alexnet: error: --data: no such file or folder: /does/not/exist. Give "
                                            "'cifar10' or an image folder, a cifar-10-batches-py folder or an "
                                            "archive of one.")


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_shows_warnings_and_errors_only(where, tmp_path, capsys):
    from data_helpers import make_image_folder

    folder = make_image_folder(tmp_path / "shapes")
    (folder / "train" / "cat" / "broken.png").write_bytes(b"not a png")  # a warning
    command = ["samples", "--data", str(folder), "--out", str(tmp_path / "grid.png"), "--count", "4"]
    assert main(["--quiet", *command] if where == "before" else [*command, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and (tmp_path / "grid.png").is_file()  # no "Wrote ...", no progress
    assert "warning: 1 file(s) could not be read as images" in captured.err
    assert main(command) == 0
    assert f"Wrote {tmp_path / 'grid.png'}" in capsys.readouterr().out


def test_train_help_gives_each_recipes_defaults_and_the_validation_rule(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: the recipe's: tutorial 50, fast 30, cpu 4, finetune 10, imagenet 90)" in text  # --epochs
    assert ("(default: --init-from's, else the recipe's: tutorial 227, fast 227, cpu 67, imagenet 227)"
            in text)  # --image-size
    assert "10% of the training images, at most 5,000" in text and "default: 5000" not in text  # --val-size
    assert "every default is the tutorial's" not in text


def test_strategy_errors_name_only_what_runs():
    import keras

    from alexnet.errors import UsageError
    from alexnet.settings.choices import strategies_on
    from alexnet.training.distribute import plan

    backend = keras.backend.backend()
    other = "data-parallel" if backend != "jax" else "mirrored"
    with pytest.raises(UsageError, match=f"--strategy {other} does not exist on the {backend} backend") as caught:
        plan(other)
    assert "multiworker" not in str(caught.value)  # refused everywhere, never offered
    assert "multiworker" not in strategies_on(backend) and "auto" in strategies_on(backend)


@pytest.mark.parametrize("variable,value,accepts", [
    ("ALEXNET_MEMORY_BUDGET", "lots", "a positive number of bytes, with K, M or G allowed"),
    ("ALEXNET_MEMORY_BUDGET", "-4G", "a positive number of bytes"),
    ("ALEXNET_STREAM_WORKERS", "-3", "a whole number of decoding processes, 0 or more"),
    ("ALEXNET_STREAM_WORKERS", "two", "a whole number of decoding processes, 0 or more"),
])
def test_a_bad_environment_variable_is_a_usage_error_whatever_the_command(variable, value, accepts, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv(variable, value)
    assert main(["summary"]) == 2  # summary reads neither: the check comes first, for every command
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"alexnet: error: {variable} must be {accepts}") and err.endswith(f"{variable}={value}")
