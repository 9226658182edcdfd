"""Crash at any instant, lose nothing: a tiny run dies at each of its write points in turn, as `kill -9` would
leave it, and its resume must end exactly where the uninterrupted run ends (training/checkpoints.py: the commit
order).

A write point is every rename (atomic writes, model saves, checkpoints), every removal and every append (the
history row) that the run makes: the subprocess counts them through a hook that lives here, not in the package,
and dies with `os._exit` just before point k. SQLite's crash tests and Jepsen-style fault injection enumerate
failures the same way.
"""

import io
import json
import shutil
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
from conftest import TINY

from alexnet.cli import main

pytestmark = pytest.mark.slow

HOOK = r"""
import builtins, os, pathlib, sys
point, run_dir, count = int(sys.argv[1]), os.path.abspath(sys.argv[2]), 0

def hit(kind, target):
    global count
    if not os.path.abspath(target).startswith(run_dir + os.sep):  # the run's own files (not the data cache's)
        return
    count += 1
    if count == point:
        os._exit(137)  # what kill -9 leaves: no cleanup, no finally blocks

real_replace, real_unlink, real_open = os.replace, pathlib.Path.unlink, builtins.open

def replace(source, target, *args, **kwargs):
    hit("rename", target)
    return real_replace(source, target, *args, **kwargs)

def unlink(self, missing_ok=False):
    if self.exists():  # a removal that removes something
        hit("removal", self)
    return real_unlink(self, missing_ok=missing_ok)

def open_(file, mode="r", *args, **kwargs):
    if "a" in mode and "+" not in mode:  # an append (history.csv); not the lock file's "a+"
        hit("append", file)
    return real_open(file, mode, *args, **kwargs)

os.replace, pathlib.Path.unlink, builtins.open = replace, unlink, open_
from alexnet.cli import main
status = main(sys.argv[3:])
print(f"write points: {count}", file=sys.stderr)
sys.exit(status)
"""


def _crashing_run(point, args, run_dir):
    """The run started in a subprocess that dies just before write point `point` of its folder (0: never)."""
    return subprocess.Popen([sys.executable, "-c", HOOK, str(point), str(run_dir), *map(str, args), "--run-dir",
                             str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _figures(run_dir):
    """history.csv without its timing columns, and metrics.json."""
    lines = (run_dir / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name not in ("seconds", "images_per_s")]
    rows = [[line.split(",")[i] for i in keep] for line in lines]
    return rows, json.loads((run_dir / "metrics.json").read_text())


def _best(run_dir):
    """(best.keras's epoch as state.json records it, its weights)."""
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    with zipfile.ZipFile(run_dir / "best.keras") as archive, \
            h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        arrays = []
        weights.visititems(lambda name, item: arrays.append(np.asarray(item)) if isinstance(item, h5py.Dataset)
                           else None)
    return state["best_epoch"], arrays


def test_a_run_killed_at_any_write_point_resumes_to_the_uninterrupted_result(cifar_slice, tmp_path, capsys):
    # Two epochs of 2 steps, a mid-epoch checkpoint at every step (the last of an epoch excepted): the writes of
    # every kind a run makes, at an epoch's end, in its middle and after its last epoch.
    # The default --checkpoint-gap: epoch 1 is not committed, its best model waits in memory for the mid-epoch
    # checkpoint of epoch 2, which writes it first.
    args = ["train", "--data", cifar_slice, "--epochs", "2", *TINY, "--limit-train", "64", "--checkpoint-every",
            "0.0001", "--checkpoint-gap", "60"]
    whole = tmp_path / "whole"
    reference = _crashing_run(0, args, whole)
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]
    points = int(err.rsplit("write points: ", 1)[1].split()[0])
    expected, best = _figures(whole), _best(whole)
    assert len(expected[0]) == 3 and best[0] in (1, 2)  # header and two epochs; the best epoch recorded
    with capsys.disabled():
        print(f"\n{points} write points in the tiny run's folder; a crash before each, then a resume")
    crashed = _crashing_run(1, args, tmp_path / "crash-1")
    for point in range(1, points + 1):
        run_dir = tmp_path / f"crash-{point}"
        _, err = crashed.communicate(timeout=600)
        assert crashed.returncode == 137, (point, err[-2000:])
        if point < points:  # the next one runs while this one resumes here
            crashed = _crashing_run(point + 1, args, tmp_path / f"crash-{point + 1}")
        if (run_dir / "config.json").is_file():
            status = main(["train", "--resume", str(run_dir)])
        else:  # killed before the folder held a run: the user runs the same command again
            status = main([*map(str, args), "--run-dir", str(run_dir)])
        assert status == 0, (point, capsys.readouterr().err[-3000:])
        assert _figures(run_dir) == expected, point  # every figure, to the last digit
        got = _best(run_dir)
        assert got[0] == best[0] and all(np.array_equal(a, b) for a, b in zip(got[1], best[1])), point
        shutil.rmtree(run_dir)  # 2 checkpoints and 3 models of 84 MB each
