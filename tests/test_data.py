import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from alexnet import data
from alexnet.errors import AlexnetError, UsageError


def _save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


def _folder(root, classes=("cat", "dog"), per_class=3, size=(8, 8)):
    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        for name in classes:
            for i in range(per_class):
                _save(root / part / name / f"{i}.png", rng.integers(0, 256, size=(*size, 3), dtype=np.uint8))
    return root


# --- image folders ------------------------------------------------------------------


def test_image_folder_mixed_modes_and_sizes(tmp_path):
    root = _folder(tmp_path, per_class=2, size=(8, 8))
    _save(root / "train" / "cat" / "gray.png", np.full((8, 8), 77, dtype=np.uint8))  # L
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255  # opaque red
    rgba[0, 0, 3] = 0  # one transparent pixel
    _save(root / "train" / "dog" / "rgba.png", rgba)
    _save(root / "test" / "dog" / "big.jpg", np.full((20, 12, 3), 90, dtype=np.uint8))  # odd size

    dataset = data.load_image_folder(root)
    assert dataset.class_names == ["cat", "dog"]
    assert dataset.x_train.shape == (6, 8, 8, 3) and dataset.x_train.dtype == np.uint8
    assert dataset.x_test.shape == (5, 8, 8, 3)  # the 20x12 image was resized to the common 8x8
    assert dataset.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    gray = dataset.x_train[2]  # files sort as 0.png, 1.png, gray.png
    assert np.all(gray == 77)
    red = dataset.x_train[5]
    assert red[1, 1].tolist() == [255, 0, 0]
    assert red[0, 0].tolist() == [255, 255, 255]  # transparency composited on white
    big = dataset.x_test[-1]
    assert np.all(np.abs(big.astype(int) - 90) <= 2)


def test_image_folder_storage_size_overrides_the_common_size(tmp_path):
    dataset = data.load_image_folder(_folder(tmp_path, size=(8, 8)), storage_size=(5, 6))
    assert dataset.x_train.shape[1:] == (5, 6, 3)


def test_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    first = data.load_image_folder(root)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(data, "decode_image", no_decoding)
    monkeypatch.setattr(data, "_image_size", no_decoding)
    second = data.load_image_folder(root)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)


def test_cache_is_invalidated_when_a_file_changes(tmp_path):
    root = _folder(tmp_path)
    first = data.load_image_folder(root)
    path = root / "train" / "cat" / "0.png"
    _save(path, np.zeros((8, 8, 3), dtype=np.uint8))
    os.utime(path, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    second = data.load_image_folder(root)
    assert first.x_train[0].any() and not second.x_train[0].any()


def test_unreadable_files_are_skipped_with_a_warning_or_refused_when_strict(tmp_path, capsys):
    root = _folder(tmp_path)
    (root / "train" / "cat" / "empty.jpg").write_bytes(b"")
    (root / "train" / "dog" / "notes.png").write_text("not an image")
    dataset = data.load_image_folder(root)
    assert len(dataset.x_train) == 6 and len(dataset.skipped) == 2
    err = capsys.readouterr().err
    assert "2 file(s) could not be read" in err and "empty.jpg" in err and "notes.png" in err
    with pytest.raises(AlexnetError, match="--strict"):
        data.load_image_folder(root, strict=True)


@pytest.mark.parametrize("breakage,message", [
    (lambda root: os.rename(root / "train", root / "training"), "no train/ folder"),
    (lambda root: os.rename(root / "test" / "dog", root / "test" / "wolf"), "different classes"),
    (lambda root: [p.unlink() for p in (root / "train" / "dog").iterdir()], "holds no image files"),
])
def test_bad_layouts_are_usage_errors(tmp_path, breakage, message):
    root = _folder(tmp_path)
    breakage(root)
    with pytest.raises(UsageError, match=message):
        data.load_image_folder(root)


def test_single_class_is_refused(tmp_path):
    with pytest.raises(UsageError, match="single class"):
        data.load_image_folder(_folder(tmp_path, classes=("cat",)))


def test_missing_path_and_non_archive_file(tmp_path):
    with pytest.raises(UsageError, match="no such file or folder"):
        data.load_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UsageError, match="not an archive"):
        data.load_dataset(str(tmp_path / "x.txt"))


def test_archive_is_extracted_once_and_unwrapped(tmp_path):
    root = _folder(tmp_path / "src" / "mydata")
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="mydata")
    dataset = data.load_dataset(str(archive))
    assert dataset.x_train.shape == (6, 8, 8, 3)
    assert data.extract_archive(archive) == data.extract_archive(archive)


def test_archive_with_an_escaping_member_is_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(archive, "w") as tar:
        tar.add(payload, arcname="../escaped.txt")
    with pytest.raises(AlexnetError, match="cannot extract"):
        data.load_dataset(str(archive))
    assert not (data.cache_dir() / "escaped.txt").exists()


# --- CIFAR batch files --------------------------------------------------------------


def _write_batches(folder, n=20, protocol=2, labels=None):
    rng = np.random.default_rng(4)
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = list(rng.integers(0, 10, size=n)) if labels is None else labels
    batch = {b"batch_label": b"training batch 1 of 1", b"labels": [int(v) for v in labels], b"data": images,
             b"filenames": [f"{i}.png".encode() for i in range(n)]}
    for name in ("data_batch_1", "test_batch"):
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in data.CIFAR10_CLASSES]}, f, protocol=protocol)
    return images, labels


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_are_read_as_images(tmp_path, protocol):
    images, labels = _write_batches(tmp_path / "cifar-10-batches-py", protocol=protocol)
    dataset = data.load_dataset(str(tmp_path))  # the parent folder is found too
    assert dataset.class_names == list(data.CIFAR10_CLASSES)
    assert dataset.x_train.shape == (20, 32, 32, 3)
    # CIFAR rows hold the red plane, then green, then blue (channels first).
    np.testing.assert_array_equal(dataset.x_train[3, :, :, 1].reshape(-1), images[3, 1024:2048])
    assert dataset.y_train.tolist() == labels


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_a_command_is_refused_and_nothing_runs(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _RunsACommand(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(AlexnetError, match="refused to load .*system"):
        data.load_dataset(str(folder))
    assert not marker.exists()


def test_truncated_batch_is_a_clear_error(tmp_path):
    folder = tmp_path / "b"
    _write_batches(folder)
    content = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(content[: len(content) // 2])
    with pytest.raises(AlexnetError, match="truncated or corrupt"):
        data.load_dataset(str(folder))


def test_labels_out_of_range_are_refused(tmp_path):
    folder = tmp_path / "b"
    _write_batches(folder, n=3, labels=[0, 10, 3])
    with pytest.raises(AlexnetError, match=r"labels out of range 0..9: \[10\]"):
        data.load_dataset(str(folder))


def test_offline_keras_download_is_a_short_error(monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://example.invalid: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(AlexnetError, match="could not download CIFAR-10.*--data PATH"):
        data.load_dataset("cifar10")


# --- hardening: the cache, concurrency, bit depths, batch contents -------------------


@pytest.mark.parametrize("damage", ["truncate x_train", "garbage meta", "swap arrays"])
def test_a_damaged_cache_is_rebuilt_with_one_line(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    root = _folder(tmp_path / "src")
    first = data.load_image_folder(root)
    (cached,) = data.cache_dir().glob("folder-*")
    if damage == "truncate x_train":
        content = (cached / "x_train.npy").read_bytes()
        (cached / "x_train.npy").write_bytes(content[: len(content) // 2])
    elif damage == "garbage meta":
        (cached / "meta.json").write_text("{not json")
    else:  # a well-formed .npy with the wrong contents
        os.replace(cached / "x_test.npy", cached / "x_train.npy")
    capsys.readouterr()
    second = data.load_image_folder(root)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    err = capsys.readouterr().err
    assert err.count(" is damaged (") == 1 and "decoding the images again" in err
    third = data.load_image_folder(root)  # rebuilt: loads quietly again
    np.testing.assert_array_equal(first.x_train, third.x_train)
    assert " is damaged (" not in capsys.readouterr().err


def test_a_read_only_cache_decodes_in_memory_and_warns_once(tmp_path, monkeypatch, capsys):
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes through mode bits: put the cache under a file, which no one can write
        (tmp_path / "blocker").write_text("")
        readonly = tmp_path / "blocker" / "cache"
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(readonly))
    data._warned_unwritable.clear()
    root = _folder(tmp_path / "src")
    archive = tmp_path / "src.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname="src")
    first = data.load_image_folder(root)
    second = data.load_dataset(str(archive))
    np.testing.assert_array_equal(first.x_train, second.x_train)
    err = capsys.readouterr().err
    assert err.count("cannot write the cache folder") == 1 and "ALEXNET_CACHE_DIR" in err


def test_cache_dir_that_is_a_file_names_the_variable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "file"))
    with pytest.raises(UsageError, match="ALEXNET_CACHE_DIR=.* is a file, not a folder"):
        data.load_image_folder(_folder(tmp_path / "src"))


def test_concurrent_extractions_of_one_archive_both_succeed(tmp_path, monkeypatch):
    """Forces the interleaving: the other process's rename lands while this one is extracting."""
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    root = _folder(tmp_path / "src" / "mydata")
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="mydata")
    real_open = tarfile.open

    def open_after_the_other_process_won(*args, **kwargs):
        monkeypatch.setattr(tarfile, "open", real_open)
        winner = data.extract_archive(archive)  # the "other process" finishes first
        assert winner.is_dir()
        return real_open(*args, **kwargs)

    monkeypatch.setattr(tarfile, "open", open_after_the_other_process_won)
    target = data.extract_archive(archive)
    assert (target / "mydata" / "train" / "cat" / "0.png").is_file()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_concurrent_cache_writes_keep_the_winner(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    root = _folder(tmp_path / "src")
    real_write = data._write_cache

    def write_after_the_other_process(folder, arrays, meta):
        monkeypatch.setattr(data, "_write_cache", real_write)
        real_write(folder, arrays, meta)  # the other process wins the rename
        real_write(folder, arrays, meta)  # this one loses it

    monkeypatch.setattr(data, "_write_cache", write_after_the_other_process)
    first = data.load_image_folder(root)
    second = data.load_image_folder(root)
    np.testing.assert_array_equal(first.x_train, second.x_train)


@pytest.mark.parametrize("suffix,mode", [(".tar.xz", "w:xz"), (".tar.bz2", "w:bz2")])
def test_xz_and_bzip2_tar_archives(tmp_path, suffix, mode):
    root = _folder(tmp_path / "src" / "mydata")
    archive = tmp_path / f"mydata{suffix}"
    with tarfile.open(archive, mode) as tar:
        tar.add(root, arcname="mydata")
    assert data.load_dataset(str(archive)).x_train.shape == (6, 8, 8, 3)


def test_high_bit_depth_images_are_scaled_not_clipped(tmp_path):
    gradient16 = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(gradient16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    gradient_float = np.linspace(0, 1, 64).reshape(8, 8).astype(np.float32)
    Image.fromarray(gradient_float).save(tmp_path / "f32.tif")
    for name in ("g16.png", "f32.tif"):
        decoded = data.decode_image(tmp_path / name)[..., 0]
        assert decoded[0, 0] == 0 and decoded[-1, -1] == 255, name
        np.testing.assert_allclose(decoded.reshape(-1), np.linspace(0, 255, 64), atol=1, err_msg=name)


def test_cifar_batch_pixel_values_above_255_are_refused_with_the_file(tmp_path):
    folder = tmp_path / "b"
    _write_batches(folder, n=3)
    batch = {b"data": np.full((3, 3072), 300, dtype=np.int64), b"labels": [0, 1, 2]}
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(AlexnetError, match=r"data_batch_1: pixel values must be whole numbers 0..255; found 300"):
        data.load_dataset(str(folder))


def test_cifar_batch_string_labels_are_refused_with_the_file(tmp_path):
    folder = tmp_path / "b"
    _write_batches(folder, n=3)
    batch = {b"data": np.zeros((3, 3072), dtype=np.uint8), b"labels": ["cat", "dog", "cat"]}
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(AlexnetError, match=r"data_batch_1: labels must be integers 0..9; found str"):
        data.load_dataset(str(folder))


def test_large_photos_are_stored_at_a_capped_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    root = _folder(tmp_path / "src", per_class=2, size=(600, 400))
    dataset = data.load_image_folder(root)
    assert dataset.x_train.shape[1:] == (256, 171, 3)  # the longer side capped at 256, the aspect kept
    assert "storing images at 256x171" in capsys.readouterr().err
    assert data.load_image_folder(root, storage_size=(300, 200)).x_train.shape[1:] == (300, 200, 3)  # as asked


def test_more_than_the_available_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_available_memory", lambda: 1_000)  # 12 images of 8x8x3 need 2 x 2,304 bytes
    monkeypatch.setattr(data, "decode_image", lambda *a: pytest.fail("decoded despite the refusal"))
    with pytest.raises(UsageError, match="needs about .* GB while decoding, more than the .* available; "
                                         "give a smaller --storage-size"):
        data.load_image_folder(_folder(tmp_path / "src"))
