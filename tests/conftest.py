"""Shared fixtures and helpers: a small real slice of CIFAR-10, a private cache folder, the tiny run's settings,
and running the `alexnet` command in a subprocess."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

# `alexnet` turns TensorFlow's oneDNN kernels on as it loads Keras (backend._import_keras), which only takes effect
# before TensorFlow is imported; helpers.py imports TensorFlow first. Without this, on a CPU where TensorFlow leaves
# them off by itself (AVX2 only), runs inside pytest would use other kernels than the `alexnet` subprocesses they
# are compared with to the last digit (the kill -9 resume tests).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# The tiny run the end-to-end tests start from: 67 px (the smallest AlexNet takes), a few batches of 32. As
# TrainConfig fields for the Python API, and as flags; a test that needs more gives its own flags after these
# (argparse keeps the last).
# checkpoint_gap 0: every epoch of a tiny run is committed, as the tests of resuming expect (the default, 60 s,
# would commit only the last; tests/test_crash_points.py runs with it).
TINY_SETTINGS = {"limit_train": 96, "val_size": 32, "limit_test": 32, "image_size": 67, "batch_size": 32,
                 "checkpoint_gap": 0}
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
    """An image folder of CIFAR-10's shape: 100 training and 30 test images of each class, from the CIFAR-10 JPEG
    archive where there is one, else generated (`make_cifar_like`); in CI the archive is required."""
    target = tmp_path_factory.mktemp("cifar10-slice")
    if ARCHIVE.is_file():
        return extract_slice(ARCHIVE, target, 100, 30)
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI tests on CIFAR-10, and its archive is missing: {ARCHIVE} (set ALEXNET_TEST_ARCHIVE)")
    _generated.append(target)
    return make_cifar_like(target, 100, 30)


_generated = []  # set when the end-to-end tests ran on generated images


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_cifar_like(target, train_per_class, test_per_class, seed=0):
    """A folder laid out as the CIFAR-10 JPEG archive (train/<class>/NNNN.jpg, test/<class>/NNNN.jpg) of
    generated 32x32 images: each class its own colour and stripe angle under noise, so that a small network
    learns it within an epoch or two, and every image is distinct (the splits' duplicate check holds)."""
    from PIL import Image  # the tests' own data, made only where the archive is missing

    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:32, 0:32]
    for label, name in enumerate(CIFAR10_CLASSES):
        colour = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 151 + 30) % 256], np.float64)
        angle = np.pi * label / len(CIFAR10_CLASSES)
        stripes = np.sin((rows * np.cos(angle) + columns * np.sin(angle)) * 0.8)[..., None]
        for part, count in (("train", train_per_class), ("test", test_per_class)):
            (target / part / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = colour * 0.6 + 60 * stripes + rng.normal(0, 25, (32, 32, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target / part / name / f"{i:04d}.jpg",
                                                                                quality=95)
    return target


def pytest_terminal_summary(terminalreporter):
    """Says in one line, at the end, when the end-to-end tests trained on generated images instead of CIFAR-10."""
    if _generated:
        terminalreporter.write_line(f"note: the end-to-end tests ran on generated images, not CIFAR-10: no archive at "
                                    f"{ARCHIVE} (set ALEXNET_TEST_ARCHIVE to test on it)", yellow=True)


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
