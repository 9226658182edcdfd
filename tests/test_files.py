"""Atomic writes, and the operating system's refusals named with the file that was being written."""

import os
import subprocess

import pytest

from alexnet.errors import AlexnetError, UsageError
from alexnet.files import save_model_atomic, write_atomic, write_json


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs, mounted where this process may (root in a container); else the test is skipped."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'mount failed'}): "
                    "the full-disk case needs root or a user namespace")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_names_the_file_and_leaves_no_temporary(full_disk):
    target = full_disk / "report.json"
    with pytest.raises(AlexnetError, match=f"cannot write {target}: No space left on device"):
        write_json(target, {"data": "x" * 200_000})
    assert os.listdir(full_disk) == []  # neither a torn file nor a temporary is left


def test_a_model_that_does_not_fit_on_the_disk_names_the_file(full_disk):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(512)])  # 130 KB of weights
    target = full_disk / "model.keras"
    with pytest.raises(AlexnetError, match=f"cannot save the model to {target}: No space left on device"):
        save_model_atomic(model, target)
    assert os.listdir(full_disk) == []


def test_a_file_where_a_folder_should_be_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="the folder .*file does not exist"):
        write_atomic(tmp_path / "file" / "out.txt", "y")


def test_an_atomic_write_replaces_the_old_file_whole(tmp_path):
    target = tmp_path / "a.txt"
    write_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["a.txt"]
