"""Shared fixtures and helpers: a small real slice of CIFAR-10, a private cache folder, the tiny run's settings,
and running the `alexnet` command in a subprocess."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

# `alexnet` turns TensorFlow's oneDNN kernels on as it loads Keras (backend._import_keras), which only takes effect
# before TensorFlow is imported; helpers.py imports TensorFlow first. Without this, on a CPU where TensorFlow leaves
# them off by itself (AVX2 only), runs inside pytest would use other kernels than the `alexnet` subprocesses they
# are compared with to the last digit (the kill -9 resume tests).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# The tiny run the end-to-end tests start from: 67 px (the smallest AlexNet takes), a few batches of 32. As
# TrainConfig fields for the Python API, and as flags; a test that needs more gives its own flags after these
# (argparse keeps the last).
TINY_SETTINGS = {"limit_train": 96, "val_size": 32, "limit_test": 32, "image_size": 67, "batch_size": 32}
TINY = [part for key, value in TINY_SETTINGS.items() for part in (f"--{key.replace('_', '-')}", str(value))]


def run_cli(*args, env=None, timeout=600):
    """`python -m alexnet ARGS` in a subprocess (env: variables set over ours); its CompletedProcess, as text."""
    return subprocess.run([sys.executable, "-m", "alexnet", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def start_cli(*args, env=None, **options):
    """`python -m alexnet ARGS` started in the background: its Popen (output piped as text unless options say
    otherwise)."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **options}
    return subprocess.Popen([sys.executable, "-m", "alexnet", *map(str, args)], env={**os.environ, **(env or {})},
                            **options)


ARCHIVE = Path(os.environ.get("ALEXNET_TEST_ARCHIVE",
                              Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg.tar.gz"))


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keeps decoded-data caches of the tests out of the user's ~/.cache."""
    previous = os.environ.get("ALEXNET_CACHE_DIR")
    os.environ["ALEXNET_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("ALEXNET_CACHE_DIR", None)
    else:
        os.environ["ALEXNET_CACHE_DIR"] = previous


def extract_slice(archive, target, train_per_class, test_per_class):
    """Extracts the first N images of each class from the CIFAR-10 JPEG archive into target/."""
    limits = {"train": train_per_class, "test": test_per_class}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts  # cifar10-jpeg/train/cat/0001.jpg
            if not member.isfile() or len(parts) != 4 or parts[1] not in limits:
                continue
            if int(Path(parts[3]).stem) < limits[parts[1]]:
                destination = target / parts[1] / parts[2] / parts[3]
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(tar.extractfile(member).read())
    return target


@pytest.fixture(scope="session")
def cifar_slice(tmp_path_factory):
    """A real image folder: 100 training and 30 test images of each CIFAR-10 class."""
    if not ARCHIVE.is_file():
        pytest.skip(f"CIFAR-10 archive not found at {ARCHIVE} (set ALEXNET_TEST_ARCHIVE)")
    return extract_slice(ARCHIVE, tmp_path_factory.mktemp("cifar10-slice"), 100, 30)


def pytest_collection_modifyitems(config, items):
    """Tests that train on the CIFAR-10 slice are end to end: marked `slow` (`make test-fast` skips them)."""
    for item in items:
        if "cifar_slice" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _console():
    """The console handler the CLI installs, so that tests see the lines a user sees (capsys, capfd)."""
    from alexnet import console

    console.setup()
    yield
