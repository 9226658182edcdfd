"""Scale-out on tf.distribute and keras.distribution, proven on this machine's CPU.

Every run is a separate process: tf.distribute and JAX's device count must be set up before
TensorFlow or JAX start.
"""

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import TINY, run_cli, start_cli

# The tiny run, with more images (two devices or processes share each batch), in float32, at a faster rate.
SMALL = [*TINY, "--limit-train", "128", "--limit-test", "64", "--no-mixed-precision", "--lr", "0.01"]
TWO_LOGICAL_CPUS = """
import os, sys
saved = os.dup(2)
os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # this harness's own TensorFlow start-up lines are not the CLI's
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
os.dup2(saved, 2)
from alexnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(argv, env=None, timeout=600, script=None):
    """The command (or `script`, the CLI under another harness) with argv; asserts that it succeeded."""
    result = run_cli(*argv, env=env, timeout=timeout) if script is None else subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-3000:]
    return result


def _losses(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def test_mirrored_over_two_devices_matches_one_device_at_the_same_global_batch(cifar_slice, tmp_path):
    data = ["--data", str(cifar_slice), "--epochs", "2", "--limit-train", "384", "--val-size", "32",
            "--limit-test", "64", "--image-size", "67", "--no-mixed-precision", "--backend", "tensorflow"]
    mirrored = _run(["train", *data, "--strategy", "mirrored", "--batch-size", "16", "--lr", "0.0025",
                     "--run-dir", str(tmp_path / "mirrored")], script=TWO_LOGICAL_CPUS,
                    env={"KERAS_BACKEND": "tensorflow"})  # the harness imports TensorFlow (and Keras) first
    assert "Strategy mirrored: 2 replicas" in mirrored.stdout and "global batch 32 (16 per replica)" in mirrored.stdout
    assert not re.search(r"^[IWEF]\d{4} \d\d:", mirrored.stderr, re.M), mirrored.stderr  # no C++ log lines
    # One device, the same global batch and learning rate (0.0025 x 2 replicas after linear scaling).
    _run(["train", *data, "--strategy", "none", "--batch-size", "32", "--lr", "0.005", "--run-dir",
          str(tmp_path / "single")])
    config = json.loads((tmp_path / "mirrored" / "config.json").read_text())
    assert config["distribution"]["global_batch"] == 32 and config["distribution"]["lr"] == pytest.approx(0.005)
    # Stated tolerance: 5% per epoch. Batch normalization computes its statistics per replica (16 images, not
    # 32) and each replica draws its own dropout masks, so the two runs are close, not identical; two
    # single-device runs with different seeds differ by about 3% here.
    for got, expected in zip(_losses(tmp_path / "mirrored"), _losses(tmp_path / "single")):
        assert got == pytest.approx(expected, rel=0.05)


def test_multiworker_is_refused_with_the_supported_alternative(cifar_slice, tmp_path):
    # Keras 3 cannot fit under MultiWorkerMirroredStrategy (keras-team/keras#20585): two localhost workers fail
    # in Keras's first step. The flag says so at once and names what works instead.
    env = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                    "task": {"type": "worker", "index": 0}})}
    result = run_cli("train", "--data", cifar_slice, *SMALL, "--backend", "tensorflow", "--strategy", "multiworker",
                     "--run-dir", tmp_path / "run", env=env, timeout=120)
    assert result.returncode == 2
    assert "keras-team/keras#20585" in result.stderr and "--backend jax --strategy data-parallel" in result.stderr
    assert not (tmp_path / "run").exists()


def test_jax_data_parallel_over_two_cpu_devices(cifar_slice, tmp_path):
    if subprocess.run([sys.executable, "-c", "import jax"], capture_output=True).returncode:
        pytest.skip("jax is not installed (pip install -e '.[jax]')")
    result = _run(["train", "--data", str(cifar_slice), "--epochs", "1", *SMALL, "--backend", "jax",
                   "--strategy", "data-parallel", "--batch-size", "16", "--run-dir", str(tmp_path / "run")],
                  env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert "Strategy data-parallel: 2 replicas" in result.stdout and "global batch 32" in result.stdout
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["distribution"]["replicas"] == 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_jax_processes(argv, tmp_path, count=2):
    """`count` JAX processes on localhost, one CPU device each, joined through JAX_COORDINATOR_ADDRESS."""
    port = _free_port()
    processes = []
    for index in range(count):
        private_tmp = tmp_path / f"tmp{index}"
        private_tmp.mkdir(exist_ok=True)
        env = {**os.environ, "KERAS_BACKEND": "jax", "TMPDIR": str(private_tmp),
               "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": str(count),
               "JAX_PROCESS_ID": str(index)}
        processes.append(start_cli("train", *argv, env=env, stderr=subprocess.STDOUT,
                                   start_new_session=True))  # its own group: a kill reaches its workers
    return processes


def _wait_all(processes, timeout=400):
    outputs = []
    for process in processes:
        out, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, out[-4000:]
        outputs.append(out)
    return outputs


def _require_jax():
    if subprocess.run([sys.executable, "-c", "import jax"], capture_output=True).returncode:
        pytest.skip("jax is not installed (pip install -e '.[jax]')")


def test_jax_two_processes_on_localhost_and_only_the_chief_writes_the_run(cifar_slice, tmp_path):
    _require_jax()
    run_dir = tmp_path / "run"
    argv = ["--data", str(cifar_slice), "--epochs", "1", *SMALL, "--strategy", "data-parallel", "--batch-size", "16",
            "--run-dir", str(run_dir)]
    chief, other = _wait_all(_start_jax_processes(argv, tmp_path))
    print(chief[-1200:])
    assert "Strategy data-parallel: 2 replicas, process 0 of 2" in chief and "process 1 of 2" in other
    for name in ("config.json", "history.csv", "model.keras", "metrics.json", "report.json",
                 "checkpoints/epoch-0001.keras"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "config.json").read_text())["distribution"]["global_batch"] == 32
    assert list((tmp_path / "tmp1").iterdir()) == []  # the other process removed its folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tmp0", "tmp1"]


@pytest.mark.parametrize("stream", [[], ["--stream"]], ids=["in-memory", "streamed"])
def test_jax_a_killed_process_then_both_restarted_resume_from_the_last_epoch(stream, cifar_slice, tmp_path):
    _require_jax()
    run_dir = tmp_path / "run"
    argv = ["--data", str(cifar_slice), "--epochs", "4", *SMALL, "--strategy", "data-parallel", "--batch-size", "16",
            "--run-dir", str(run_dir), *stream]
    chief, other = _start_jax_processes(argv, tmp_path)
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / "epoch-0002.keras").exists():
        assert chief.poll() is None and other.poll() is None, "a process ended early"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # One process dies; the chief then waits on it in a collective, so the job is stopped and restarted whole.
    # Each process is killed with its group, as a machine's end takes a streamed run's Grain workers with it.
    for process in (other, chief):
        os.killpg(process.pid, signal.SIGKILL)
    chief.wait(), other.wait()
    assert not (run_dir / "metrics.json").exists()

    outputs = _wait_all(_start_jax_processes(["--resume", str(run_dir)], tmp_path))
    print(outputs[0][-1200:])
    assert all("Resuming after epoch" in out for out in outputs)
    with open(run_dir / "history.csv", newline="") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1", "2", "3"]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 4
    assert json.loads((run_dir / "config.json").read_text())["data"]["streamed"] == bool(stream)


def test_jax_sigterm_to_one_process_stops_both_at_the_same_step_then_both_resume(cifar_slice, tmp_path):
    _require_jax()
    run_dir = tmp_path / "run"
    argv = ["--data", str(cifar_slice), "--epochs", "30", *SMALL, "--strategy", "data-parallel", "--batch-size", "16",
            "--run-dir", str(run_dir)]
    chief, other = _start_jax_processes(argv, tmp_path)
    deadline = time.monotonic() + 600  # two JAX processes on two busy cores start slowly
    while not (run_dir / "checkpoints" / "epoch-0001.keras").exists():
        assert chief.poll() is None and other.poll() is None, "a process ended early"
        assert time.monotonic() < deadline, "no epoch ended in 600 s"
        time.sleep(0.05)
    other.send_signal(signal.SIGTERM)  # the signal reaches one process: both stop at one step and save it
    outputs = [process.communicate(timeout=300)[0] for process in (chief, other)]
    assert (chief.returncode, other.returncode) == (143, 143), outputs[0][-2000:] + outputs[1][-2000:]
    assert "stopped by SIGTERM after" in outputs[0] and f"alexnet train --resume {run_dir}" in outputs[0]
    assert "SIGTERM received: stopping at the end of the current step" in outputs[1]
    assert f"alexnet train --resume {run_dir}" in outputs[1]  # not the other process's temporary folder
    with open(run_dir / "history.csv", newline="") as f:
        done = len(list(csv.DictReader(f)))
    outputs = _wait_all(_start_jax_processes(["--resume", str(run_dir), "--epochs", str(done + 1)], tmp_path))
    assert all("Resuming after epoch" in out for out in outputs)
    with open(run_dir / "history.csv", newline="") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(done + 1))


UNEVEN = ["--epochs", "1", "--limit-train", "129", "--val-size", "33", "--limit-test", "65", "--image-size", "67",
          "--no-mixed-precision", "--lr", "0.01", "--strategy", "data-parallel", "--batch-size", "16"]


def _counts_every_test_image_once(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    assert report["test_images"] == 65 and sum(map(sum, report["confusion_matrix"])) == 65
    with open(run_dir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # Over exactly the 33 validation images: padding to a multiple of the devices weighs 0.
    right = float(rows[0]["val_accuracy"]) * 33
    assert len(rows) == 1 and right == pytest.approx(round(right))
    return rows


def test_jax_data_parallel_with_splits_that_do_not_divide_by_the_devices(cifar_slice, tmp_path):
    _require_jax()
    _run(["train", "--data", str(cifar_slice), *UNEVEN, "--backend", "jax", "--run-dir", str(tmp_path / "run")],
         env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    _counts_every_test_image_once(tmp_path / "run")


def test_jax_two_processes_with_uneven_splits_and_test_each_epoch(cifar_slice, tmp_path):
    _require_jax()
    run_dir = tmp_path / "run"
    _wait_all(_start_jax_processes(["--data", str(cifar_slice), *UNEVEN, "--test-each-epoch",
                                    "--run-dir", str(run_dir)], tmp_path))
    rows = _counts_every_test_image_once(run_dir)
    accuracy = float(rows[0]["test_accuracy"])  # over exactly the 65 test images, as the final report
    assert accuracy * 65 == pytest.approx(round(accuracy * 65))
