import os
import tarfile

import numpy as np
import pytest
from data_helpers import make_image_folder, save_image

from alexnet import data
from alexnet.data import cache, image_folder
from alexnet.errors import UsageError


def test_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path)
    first = image_folder.load_image_folder(root)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(image_folder, "decode_image", no_decoding)
    monkeypatch.setattr(image_folder, "_image_size", no_decoding)
    second = image_folder.load_image_folder(root)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)


def test_cache_is_invalidated_when_a_file_changes(tmp_path):
    root = make_image_folder(tmp_path)
    first = image_folder.load_image_folder(root)
    path = root / "train" / "cat" / "0.png"
    save_image(path, np.zeros((8, 8, 3), dtype=np.uint8))
    os.utime(path, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    second = image_folder.load_image_folder(root)
    assert first.x_train[0].any() and not second.x_train[0].any()


@pytest.mark.parametrize("damage", ["truncate x_train", "garbage meta", "swap arrays"])
def test_a_damaged_cache_is_rebuilt_with_one_line(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "src")
    first = image_folder.load_image_folder(root)
    (cached,) = cache.cache_dir().glob("folder-*")
    if damage == "truncate x_train":
        content = (cached / "x_train.npy").read_bytes()
        (cached / "x_train.npy").write_bytes(content[: len(content) // 2])
    elif damage == "garbage meta":
        (cached / "meta.json").write_text("{not json")
    else:  # a well-formed .npy with the wrong contents
        os.replace(cached / "x_test.npy", cached / "x_train.npy")
    capsys.readouterr()
    second = image_folder.load_image_folder(root)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    err = capsys.readouterr().err
    assert err.count(" is damaged (") == 1 and "decoding the images again" in err
    third = image_folder.load_image_folder(root)  # rebuilt: loads quietly again
    np.testing.assert_array_equal(first.x_train, third.x_train)
    assert " is damaged (" not in capsys.readouterr().err


def test_a_read_only_cache_decodes_in_memory_and_warns_once(tmp_path, monkeypatch, capsys):
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes through mode bits: put the cache under a file, which no one can write
        (tmp_path / "blocker").write_text("")
        readonly = tmp_path / "blocker" / "cache"
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(readonly))
    cache._warned_unwritable.clear()
    root = make_image_folder(tmp_path / "src")
    archive = tmp_path / "src.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname="src")
    first = image_folder.load_image_folder(root)
    second = data.load_dataset(str(archive))
    np.testing.assert_array_equal(first.x_train, second.x_train)
    err = capsys.readouterr().err
    assert err.count("cannot write the cache folder") == 1 and "ALEXNET_CACHE_DIR" in err


def test_cache_dir_that_is_a_file_names_the_variable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "file"))
    with pytest.raises(UsageError, match="ALEXNET_CACHE_DIR=.* is a file, not a folder"):
        image_folder.load_image_folder(make_image_folder(tmp_path / "src"))


def test_concurrent_cache_writes_keep_the_winner(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "src")
    real_write = image_folder._write_cache

    def write_after_the_other_process(folder, arrays, meta):
        monkeypatch.setattr(image_folder, "_write_cache", real_write)
        real_write(folder, arrays, meta)  # the other process wins the rename
        real_write(folder, arrays, meta)  # this one loses it

    monkeypatch.setattr(image_folder, "_write_cache", write_after_the_other_process)
    first = image_folder.load_image_folder(root)
    second = image_folder.load_image_folder(root)
    np.testing.assert_array_equal(first.x_train, second.x_train)
