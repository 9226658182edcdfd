"""Training you can trust: resume after kill -9 and Ctrl-C, reproducible runs, NaN, refusals."""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
from helpers import event_steps

from alexnet.cli import main

TINY = ["--limit-train", "96", "--val-size", "32", "--limit-test", "32", "--image-size", "67", "--batch-size", "32"]


def _history(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _figures(run_dir):
    """history.csv without its timing columns."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in _history(run_dir)]


def _start(cifar_slice, run_dir, epochs):
    argv = [sys.executable, "-m", "alexnet", "train", "--data", str(cifar_slice), "--epochs", str(epochs),
            "--run-dir", str(run_dir), *TINY]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, process, timeout=180):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.05)


def test_kill_9_then_resume_finishes_with_each_epoch_logged_once(cifar_slice, tmp_path, capsys):
    run_dir = tmp_path / "run"
    process = _start(cifar_slice, run_dir, epochs=5)
    _wait_for(run_dir / "checkpoints" / "epoch-0002.keras", process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (run_dir / "metrics.json").exists()
    print(f"killed with {len(_history(run_dir))} epoch(s) in history.csv")

    assert main(["train", "--resume", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "Resuming after epoch" in out
    assert [row["epoch"] for row in _history(run_dir)] == ["0", "1", "2", "3", "4"]
    for part in ("train", "validation"):
        assert event_steps(run_dir / "logs" / part, "epoch_loss") == [0, 1, 2, 3, 4]
        assert event_steps(run_dir / "logs" / part, "epoch_accuracy") == [0, 1, 2, 3, 4]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 5
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "epoch-0004.keras", "epoch-0005.keras", "state.json"]


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(cifar_slice, tmp_path):
    run_dir = tmp_path / "run"
    process = _start(cifar_slice, run_dir, epochs=30)
    _wait_for(run_dir / "checkpoints" / "epoch-0001.keras", process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"Resume with: alexnet train --resume {run_dir}" in err
    assert "Traceback" not in err
    # stdout is a pipe, not a terminal: one line an epoch, no progress-bar redraws
    assert "\r" not in out and "Epoch 1/30\n" in out
    assert len(_history(run_dir)) >= 1 and (run_dir / "checkpoints").exists()


def test_same_seed_same_history_to_the_last_digit(cifar_slice, tmp_path):
    histories = []
    for name in ("a", "b"):
        assert main(["train", "--data", str(cifar_slice), "--epochs", "2", "--seed", "7", "--lr", "0.01",
                     "--run-dir", str(tmp_path / name), *TINY]) == 0
        histories.append(_figures(tmp_path / name))
    assert histories[0] == histories[1]
    assert main(["train", "--data", str(cifar_slice), "--epochs", "2", "--seed", "8", "--lr", "0.01",
                 "--run-dir", str(tmp_path / "c"), *TINY]) == 0
    other = _figures(tmp_path / "c")
    assert other != histories[0]


@pytest.fixture(scope="module")
def finished_run(cifar_slice, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", "--data", str(cifar_slice), "--epochs", "1", "--run-dir", str(run_dir), *TINY]) == 0
    return run_dir


def test_a_finished_run_is_not_extended_by_mistake(finished_run, capsys):
    before = (finished_run / "metrics.json").read_text()
    assert main(["train", "--resume", str(finished_run)]) == 2
    assert "finished all 1 epochs" in capsys.readouterr().err
    assert (finished_run / "metrics.json").read_text() == before
    assert main(["train", "--resume", str(finished_run), "--lr", "0.5"]) == 2
    assert "only --epochs may change. Received: --lr" in capsys.readouterr().err


def test_a_finished_run_is_extended_when_asked(finished_run):
    assert main(["train", "--resume", str(finished_run), "--epochs", "2"]) == 0
    assert [row["epoch"] for row in _history(finished_run)] == ["0", "1"]
    assert json.loads((finished_run / "config.json").read_text())["settings"]["epochs"] == 2
    assert json.loads((finished_run / "metrics.json").read_text())["epochs"] == 2


def test_overwrite_replaces_the_run(finished_run, cifar_slice, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(cifar_slice), "--epochs", "1", "--run-dir", str(run_dir), *TINY]) == 0
    (run_dir / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(cifar_slice), "--epochs", "1", "--run-dir", str(run_dir),
                 "--overwrite", "--seed", "3", *TINY]) == 0
    assert json.loads((run_dir / "config.json").read_text())["settings"]["seed"] == 3
    assert len(_history(run_dir)) == 1  # not appended to the old run's history
    assert (run_dir / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_nan_loss_stops_at_once_with_a_clear_message(cifar_slice, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "--data", str(cifar_slice), "--epochs", "3", "--lr", "1e38", "--run-dir", str(run_dir),
                 *TINY])
    err = capsys.readouterr().err
    assert code == 1
    assert "loss became NaN or infinite in epoch 1" in err and "Lower --lr" in err
    assert not (run_dir / "model.keras").exists() and not (run_dir / "metrics.json").exists()
    assert not (run_dir / "checkpoints").exists() or not list((run_dir / "checkpoints").iterdir())


def test_a_truncated_model_file_is_a_clear_error(finished_run, tmp_path, capsys):
    broken = tmp_path / "broken.keras"
    content = (finished_run / "model.keras").read_bytes()
    broken.write_bytes(content[: len(content) // 3])
    assert main(["evaluate", str(broken), "--data", str(finished_run)]) in (1, 2)
    err = capsys.readouterr().err
    assert err.startswith("alexnet: error:") and "Traceback" not in err
    assert main(["predict", str(broken), str(broken)]) == 1
    assert f"cannot load {broken} as a Keras model" in capsys.readouterr().err


def test_resume_of_a_folder_without_a_run(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["{\n  \"settings\": {\"epochs\": 2", "[]", ""])
def test_resume_with_a_damaged_config_names_the_file(finished_run, tmp_path, capsys, damage):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "config.json").write_text(damage)
    assert main(["train", "--resume", str(run_dir), "--epochs", "5"]) == 2
    err = capsys.readouterr().err
    assert f"{run_dir / 'config.json'} is damaged" in err and "cannot be resumed" in err
    assert main(["evaluate", str(run_dir)]) == 2
    assert "cannot be evaluated" in capsys.readouterr().err
