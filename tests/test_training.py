"""Training you can trust: resume after kill -9 and Ctrl-C, reproducible runs, NaN, refusals."""

import csv
import importlib.util
import json
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_cli, start_cli
from helpers import event_steps

from alexnet.cli import main
from alexnet.results.loading import load_model
from alexnet.runs import RunFolder


def _history(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _figures(run_dir):
    """history.csv without its timing columns."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in _history(run_dir)]


def _start(cifar_slice, run_dir, epochs, backend=None):
    return start_cli("train", "--data", cifar_slice, "--epochs", epochs, "--run-dir", run_dir, *TINY,
                     *(["--backend", backend] if backend else []))


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
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if not p.name.startswith("best-")) == [
        "epoch-0004.json", "epoch-0004.keras", "epoch-0005.json", "epoch-0005.keras", "state.json"]
    assert 1 <= len(list((run_dir / "checkpoints").glob("best-*.keras"))) <= 2  # the best models to fall back on


@pytest.mark.parametrize("sent, code, backend", [(signal.SIGINT, 130, None), (signal.SIGTERM, 143, None),
                                                 (signal.SIGTERM, 143, "jax"), (signal.SIGUSR1, 143, None)],
                         ids=["ctrl-c", "sigterm", "sigterm-jax", "sigusr1"])
def test_ctrl_c_and_stop_signals_stop_cleanly_and_say_how_to_resume(cifar_slice, tmp_path, sent, code, backend):
    if backend:
        pytest.importorskip(backend)
    run_dir = tmp_path / "run"
    process = _start(cifar_slice, run_dir, epochs=30, backend=backend)
    _wait_for(run_dir / "checkpoints" / "epoch-0001.keras", process)
    process.send_signal(sent)
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert f"Resume with: alexnet train --resume {run_dir}" in err
    assert "Traceback" not in err
    if sent != signal.SIGINT:  # a scheduler's signal is named, and the run stops at the end of a step
        assert f"{sent.name} received: stopping at the end of the current step" in err
        assert f"stopped by {sent.name} after" in err
    # stdout is a pipe, not a terminal: one line an epoch, no progress-bar redraws
    assert "\r" not in out and "Epoch 1/30\n" in out
    done = len(_history(run_dir))
    assert done >= 1 and (run_dir / "checkpoints").exists()
    if sent == signal.SIGTERM:  # the resume goes on where the stop saved, on the run's own backend
        resume = ["train", "--resume", str(run_dir), "--epochs", str(done + 1)]
        if backend is None:
            assert main(resume) == 0
        else:  # this process runs Keras on TensorFlow: the JAX run resumes in its own
            resumed = run_cli(*resume)
            assert resumed.returncode == 0, resumed.stderr[-3000:]
            assert "Resuming after epoch" in resumed.stdout + resumed.stderr
        assert [int(row["epoch"]) for row in _history(run_dir)] == list(range(done + 1))


def test_a_stop_signal_after_the_last_epoch_leaves_the_report_to_the_resume(cifar_slice, tmp_path, capsys,
                                                                            monkeypatch):
    """SIGTERM while the final model is written (training done): exit 143 before the test report, which can take
    long (ImageNet's 10-crop test); the resume writes it. Before, the run said it would stop, then did not."""
    import os

    from alexnet.training import trainer

    run_dir, written = tmp_path / "run", trainer.save_model_atomic

    def write_then_signal(model, path):
        written(model, path)
        if Path(path).name == RunFolder.FINAL:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "save_model_atomic", write_then_signal)
    assert main(["train", "--data", str(cifar_slice), "--epochs", "1", "--run-dir", str(run_dir), *TINY]) == 143
    said = "".join(capsys.readouterr())
    assert "SIGTERM received: stopping before the test report (every epoch is saved)" in said
    assert (f"stopped by SIGTERM after the last epoch, before the test report; every epoch is saved. Write the "
            f"report with: alexnet train --resume {run_dir}") in said
    assert (run_dir / RunFolder.FINAL).is_file() and not (run_dir / "metrics.json").exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 1
    assert [row["epoch"] for row in _history(run_dir)] == ["0"]


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


def test_jit_on_tensorflow_s_cpu_compiles_with_xla(cifar_slice, tmp_path, monkeypatch, capsys):
    """Keras does not compile with XLA while op determinism is on (and says so only in a warning): a run that
    said XLA on trained without it. Now `--jit` turns op determinism off, also after an earlier run here set it."""
    from alexnet.model import compiling

    assert main(["train", "--data", str(cifar_slice), "--epochs", "1", "--run-dir", str(tmp_path / "a"), *TINY]) == 0
    compiled, compile_model = [], compiling.compile_model
    monkeypatch.setattr(compiling, "compile_model",
                        lambda *a, **k: compiled.append(compile_model(*a, **k)) or compiled[-1])
    assert main(["train", "--data", str(cifar_slice), "--epochs", "1", "--jit", "--run-dir", str(tmp_path / "b"),
                 *TINY]) == 0
    assert compiled[0].jit_compile is True
    speed = json.loads((tmp_path / "b" / "config.json").read_text())["speed"]
    assert (speed["jit"], speed["op_determinism"]) == (True, False)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["speed"]["op_determinism"] is True
    capsys.readouterr()
    assert main(["train", "--data", str(cifar_slice), "--recipe", "cpu", "--epochs", "1", "--jit", "--run-dir",
                 str(tmp_path / "c"), *TINY]) == 0  # its random shifts are keras.ops: XLA compiles them too
    assert compiled[-1].jit_compile is True and "XLA is off after all" not in "".join(capsys.readouterr())


@pytest.fixture(scope="module")
def finished_run(cifar_slice, tmp_path_factory):
    return _trained(cifar_slice, tmp_path_factory.mktemp("finished") / "run", epochs=1)


def _trained(cifar_slice, run_dir, epochs):
    assert main(["train", "--data", str(cifar_slice), "--epochs", str(epochs), "--run-dir", str(run_dir), *TINY]) == 0
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


def test_a_truncated_model_file_is_a_clear_error(finished_run, cifar_slice, tmp_path, capsys):
    broken = tmp_path / "broken.keras"
    content = (finished_run / "model.keras").read_bytes()
    broken.write_bytes(content[: len(content) // 3])
    expected = f"alexnet: error: cannot load {broken}: it is not a valid Keras archive"
    assert main(["evaluate", str(broken), "--data", str(cifar_slice)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(expected) and "Traceback" not in err
    assert main(["predict", str(broken), str(broken)]) == 1
    assert capsys.readouterr().err.startswith(expected)


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


@pytest.mark.parametrize("last_epoch,warned", [
    ({"loss": 2.0, "val_loss": 3e21}, "validation"), ({"loss": 2.0, "val_loss": float("nan")}, "validation"),
    ({"loss": 9e9, "val_loss": 2.5}, None), ({"loss": float("nan")}, "training"), ({"loss": 2.5}, None)])
def test_a_diverged_run_is_named(capsys, last_epoch, warned):
    """By its validation loss, or without validation (--val-size 0) by its training loss."""
    from alexnet.training.trainer import _warn_if_diverged

    _warn_if_diverged(last_epoch, classes=10, lr=0.5)
    err = capsys.readouterr().err
    assert ("training diverged" in err and "Lower --lr (now 0.5)" in err) == (warned is not None)
    assert warned is None or f"the final {warned} loss" in err


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_val_size_0_trains_on_every_image_and_reports_no_validation(cifar_slice, tmp_path, capsys, stream):
    """A final fit on all training images: no validation figure anywhere (absent, never NaN or the test's)."""
    run_dir = tmp_path / "run"
    tiny = ["--limit-train", "64", "--limit-test", "32", "--image-size", "67", "--batch-size", "32"]
    assert main(["train", "--data", str(cifar_slice), "--epochs", "2", *tiny, "--val-size", "0",
                 *(["--stream"] if stream else []), "--run-dir", str(run_dir)]) == 0
    assert "No validation (--val-size 0)" in capsys.readouterr().out
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["data"]["train"], config["data"]["validation"], config["settings"]["val_size"]) == (64, 0, 0)
    history = _history(run_dir)
    assert [row["epoch"] for row in history] == ["0", "1"]
    assert not [column for column in history[0] if column.startswith("val_")]
    assert all(row["loss"] != "nan" for row in history)
    assert not (run_dir / "logs" / "validation").exists()
    assert event_steps(run_dir / "logs" / "train", "epoch_loss") == [0, 1]
    assert not (run_dir / "best.keras").exists() and (run_dir / "model.keras").exists()
    assert "test_accuracy" in json.loads((run_dir / "metrics.json").read_text())
    assert main(["train", "--resume", str(run_dir), "--epochs", "3"]) == 0  # a resume keeps it so
    assert [row["epoch"] for row in _history(run_dir)] == ["0", "1", "2"]
    assert not (run_dir / "logs" / "validation").exists()


@pytest.fixture(scope="module")
def two_epochs(cifar_slice, tmp_path_factory):
    """A finished run of 2 epochs (so two checkpoints), copied by each test that changes it."""
    return _trained(cifar_slice, tmp_path_factory.mktemp("two") / "run", epochs=2)


def _copy(run_dir, tmp_path):
    import shutil

    return Path(shutil.copytree(run_dir, tmp_path / "copy"))


def test_resume_falls_back_past_a_truncated_checkpoint_and_keeps_it(two_epochs, tmp_path, capsys):
    run_dir = _copy(two_epochs, tmp_path)
    newest = run_dir / "checkpoints" / "epoch-0002.keras"
    newest.write_bytes(newest.read_bytes()[:1000])
    assert main(["train", "--resume", str(run_dir), "--epochs", "3"]) == 0
    captured = capsys.readouterr()
    assert f"checkpoint {newest} does not load" in captured.err and "kept aside as epoch-0002.keras.damaged" in \
        captured.err
    assert f"Resuming after epoch 1 from {run_dir / 'checkpoints' / 'epoch-0001.keras'}" in captured.out
    assert (run_dir / "checkpoints" / "epoch-0002.keras.damaged").is_file()  # kept, not deleted
    assert [row["epoch"] for row in _history(run_dir)] == ["0", "1", "2"]  # epochs 2 and 3 run again
    assert json.loads((run_dir / "config.json").read_text())["settings"]["epochs"] == 3


def test_a_resume_that_cannot_load_changes_nothing(two_epochs, tmp_path, capsys):
    run_dir = _copy(two_epochs, tmp_path)
    for path in (run_dir / "checkpoints").glob("epoch-*.keras"):
        path.write_bytes(b"not a zip")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(run_dir), "--epochs", "3"]) == 1
    assert "no checkpoint of" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after == before  # config.json (epochs 2) included


def test_best_so_far_survives_a_deleted_history(two_epochs, tmp_path):
    run_dir = _copy(two_epochs, tmp_path)
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    best = (run_dir / "best.keras").read_bytes()
    (run_dir / "history.csv").unlink()
    state["best_val_accuracy"] = 1.0  # no later epoch can beat it: best.keras must stay as it is
    (run_dir / "checkpoints" / "state.json").write_text(json.dumps(state))
    assert main(["train", "--resume", str(run_dir), "--epochs", "3"]) == 0
    assert (run_dir / "best.keras").read_bytes() == best


def test_a_finished_run_without_checkpoints_is_refused(two_epochs, tmp_path, capsys):
    import shutil

    run_dir = _copy(two_epochs, tmp_path)
    shutil.rmtree(run_dir / "checkpoints")
    assert main(["train", "--resume", str(run_dir), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "its checkpoints" in err and "are gone, so it cannot be continued" in err
    assert not (run_dir / "checkpoints").exists() and len(_history(run_dir)) == 2  # nothing trained


def test_resume_removes_temporaries_of_a_killed_process(two_epochs, tmp_path, capsys):
    run_dir = _copy(two_epochs, tmp_path)
    (run_dir / ".best.tmp4242.keras").write_bytes(b"partial")
    assert main(["train", "--resume", str(run_dir), "--epochs", "3"]) == 0
    assert not (run_dir / ".best.tmp4242.keras").exists()
    assert "Removed 1 temporary file(s)" in capsys.readouterr().out


def test_ctrl_c_before_the_first_epoch_leaves_no_folder_behind(cifar_slice, tmp_path):
    run_dir = tmp_path / "run"
    process = _start(cifar_slice, run_dir, epochs=3)
    _wait_for(run_dir / "config.json", process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    if (run_dir / "checkpoints").exists():  # the machine was fast: an epoch ended first; then resume works
        pytest.skip("the first epoch ended before the signal")
    assert "nothing was kept, so the same command starts afresh" in err
    assert not (run_dir / "config.json").exists()
    retry = _start(cifar_slice, run_dir, epochs=1)
    assert retry.wait(timeout=300) == 0, retry.communicate()


@pytest.mark.parametrize("delay", [0.3, 1.5, 3.0])
def test_ctrl_c_during_start_up_exits_130_without_a_crash(cifar_slice, tmp_path, delay):
    """A Ctrl-C while TensorFlow loads once crashed the interpreter (exit 139) or was ignored."""
    run_dir = tmp_path / "run"
    process = _start(cifar_slice, run_dir, epochs=1)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.fail(f"the Ctrl-C at {delay} s was ignored: the run finished\n{err}")
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not run_dir.exists() or not (run_dir / "config.json").exists()


MID_EPOCH = ["--limit-train", "192", "--val-size", "32", "--limit-test", "32", "--image-size", "67",
             "--batch-size", "32", "--seed", "7", "--lr", "0.01", "--checkpoint-gap", "0",
             "--checkpoint-every", "1e-6"]  # 6 steps an epoch


@pytest.mark.parametrize("stream, ema", [(False, False), (True, False), (False, True)],
                         ids=["in-memory", "streamed", "weight-average"])
def test_kill_9_mid_epoch_then_resume_equals_the_uninterrupted_run(cifar_slice, tmp_path, capsys, stream, ema):
    """--checkpoint-every 1e-6 (minutes) saves after every step; the kill lands in the second epoch. With --ema the
    resumed epoch is a `fit` of its own, and Keras puts the average in place at the end of each: the third epoch
    must not go on from it."""
    epochs = 3 if ema else 2
    args = ["--data", str(cifar_slice), "--epochs", str(epochs), *MID_EPOCH, *(["--stream"] if stream else []),
            *(["--ema", "0.5"] if ema else [])]
    assert main(["train", *args, "--run-dir", str(tmp_path / "whole")]) == 0

    run_dir = tmp_path / "killed"
    process = start_cli("train", *args, "--run-dir", run_dir)
    _wait_for(run_dir / "checkpoints" / "epoch-0001-step-0000003.keras", process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (run_dir / "checkpoints" / "epoch-0002.keras").exists()  # killed mid-epoch

    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert "Resuming after epoch 1 and " in capsys.readouterr().out
    assert _figures(run_dir) == _figures(tmp_path / "whole")  # every figure, to the last digit
    final = [load_model(folder / "model.keras").get_weights() for folder in (run_dir, tmp_path / "whole")]
    assert all(np.array_equal(a, b) for a, b in zip(*final))
    if ema:  # the final model is the average, not the trained weights of the last checkpoint
        trained = load_model(run_dir / "checkpoints" / f"epoch-{epochs:04d}.keras").get_weights()
        assert not all(np.array_equal(a, b) for a, b in zip(final[0], trained))
    for part in ("train", "validation"):
        assert event_steps(run_dir / "logs" / part, "epoch_loss") == list(range(epochs))
    assert not list((run_dir / "checkpoints").glob("*-step-*"))  # the epoch's checkpoint replaced them


def test_sigterm_mid_epoch_saves_the_step_it_stopped_at(cifar_slice, tmp_path, capsys):
    """30 epochs, so that the signal lands in training however fast the machine (3 ended before it on a fast one)."""
    run_dir = tmp_path / "run"
    process = start_cli("train", "--data", cifar_slice, "--epochs", "30", *MID_EPOCH[:-2], "--checkpoint-every", "0",
                        "--run-dir", run_dir)
    _wait_for(run_dir / "checkpoints" / "epoch-0001.keras", process)
    time.sleep(1.5)  # into a later epoch
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    steps = list((run_dir / "checkpoints").glob("epoch-*-step-*.keras"))
    if not steps:  # the signal landed on an epoch's last step or in validation: the epoch's checkpoint is it
        assert re.search(r"stopped by SIGTERM after \d+ completed epoch\(s\); ", err), err
        return
    _, done, _, step = steps[0].stem.split("-")
    done, step = int(done), int(step)
    assert f"stopped by SIGTERM after {done} completed epoch(s) and {step} step(s) of epoch {done + 1}" in err
    assert main(["train", "--resume", str(run_dir), "--epochs", str(done + 1)]) == 0
    assert f"Resuming after epoch {done} and {step} steps of epoch {done + 1}" in capsys.readouterr().out
    assert [int(row["epoch"]) for row in _history(run_dir)] == list(range(done + 1))


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_a_ragged_jax_run_compiles_each_step_function_once(cifar_slice, tmp_path):
    # 96 training images at 32 (whole batches), 40 validation and 50 test images (neither a multiple of the
    # batch): evaluation and prediction batches are all of one size, so nothing compiles twice.
    result = run_cli("--debug", "train", "--data", cifar_slice, "--backend", "jax", "--epochs", "2", "--run-dir",
                     tmp_path / "run", *TINY, "--val-size", "40", "--limit-test", "50", env={"JAX_LOG_COMPILES": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    compiles = re.findall(r"Compiling jit\((\w+_step)", result.stdout + result.stderr)
    assert sorted(compiles) == ["predict_step", "test_step", "train_step"], compiles
