import os

import numpy as np
import pytest
from data_helpers import make_image_folder, save_image

from alexnet.data import FileIndex, image_folder, load_dataset
from alexnet.errors import AlexnetError, UsageError


def test_image_folder_mixed_modes_and_sizes(tmp_path):
    root = make_image_folder(tmp_path, per_class=2, size=(8, 8))
    save_image(root / "train" / "cat" / "gray.png", np.full((8, 8), 77, dtype=np.uint8))  # L
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255  # opaque red
    rgba[0, 0, 3] = 0  # one transparent pixel
    save_image(root / "train" / "dog" / "rgba.png", rgba)
    save_image(root / "test" / "dog" / "big.jpg", np.full((20, 12, 3), 90, dtype=np.uint8))  # odd size

    dataset = image_folder.load_image_folder(root)
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
    dataset = image_folder.load_image_folder(make_image_folder(tmp_path, size=(8, 8)), storage_size=(5, 6))
    assert dataset.x_train.shape[1:] == (5, 6, 3)


def test_unreadable_files_are_skipped_with_a_warning_or_refused_when_strict(tmp_path, capsys):
    root = make_image_folder(tmp_path)
    (root / "train" / "cat" / "empty.jpg").write_bytes(b"")
    (root / "train" / "dog" / "notes.png").write_text("not an image")
    dataset = image_folder.load_image_folder(root)
    assert len(dataset.x_train) == 6 and len(dataset.skipped) == 2
    err = capsys.readouterr().err
    assert "2 file(s) could not be read" in err and "empty.jpg" in err and "notes.png" in err
    with pytest.raises(AlexnetError, match="--strict"):
        image_folder.load_image_folder(root, strict=True)


@pytest.mark.parametrize("breakage,message", [
    (lambda root: os.rename(root / "train", root / "training"), "no train/ folder"),
    (lambda root: os.rename(root / "test" / "dog", root / "test" / "wolf"), "different classes"),
    (lambda root: [p.unlink() for p in (root / "train" / "dog").iterdir()], "holds no image files"),
])
def test_bad_layouts_are_usage_errors(tmp_path, breakage, message):
    root = make_image_folder(tmp_path)
    breakage(root)
    with pytest.raises(UsageError, match=message):
        image_folder.load_image_folder(root)


def test_single_class_is_refused(tmp_path):
    with pytest.raises(UsageError, match="single class"):
        image_folder.load_image_folder(make_image_folder(tmp_path, classes=("cat",)))


def test_large_photos_are_stored_at_a_capped_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "src", per_class=2, size=(600, 400))
    dataset = image_folder.load_image_folder(root)
    assert dataset.x_train.shape[1:] == (256, 171, 3)  # the longer side capped at 256, the aspect kept
    assert "storing images at 256x171" in capsys.readouterr().err
    assert image_folder.load_image_folder(root, storage_size=(300, 200)).x_train.shape[1:] == (300, 200, 3)  # as asked


def test_more_than_the_available_memory_is_refused_without_streaming(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(image_folder, "_available_memory", lambda: 1_000)  # 12 images of 8x8x3 need 2 x 2,304 bytes
    monkeypatch.setattr(image_folder, "decode_image", lambda *a: pytest.fail("decoded despite the refusal"))
    with pytest.raises(UsageError, match="needs about .* GB while decoding, more than the .* available; "
                                         "stream it from disk .--stream., give a smaller --storage-size"):
        image_folder.load_image_folder(make_image_folder(tmp_path / "src"), stream=False)


def test_a_folder_too_large_for_the_memory_budget_streams_and_its_index_is_cached(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ALEXNET_MEMORY_BUDGET", "4K")  # 12 images of 8x8x3 need 2 x 2,304 bytes while decoding
    monkeypatch.setattr(image_folder, "decode_image", lambda *a: pytest.fail("a streamed folder was decoded"))
    folder = make_image_folder(tmp_path / "src")
    dataset = image_folder.load_image_folder(folder)
    assert isinstance(dataset.x_train, FileIndex) and isinstance(dataset.x_test, FileIndex)
    assert (len(dataset.x_train), len(dataset.x_test), dataset.class_names) == (6, 6, ["cat", "dog"])
    assert dataset.x_train.shape == (6, 8, 8, 3) and dataset.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    assert [dataset.x_train.path(i).parent.name for i in range(6)] == ["cat"] * 3 + ["dog"] * 3
    captured = capsys.readouterr()
    assert "note: 12 images of" in captured.err and "would not fit in memory" in captured.err
    assert "the index takes" in captured.out and "bytes an image" in captured.out
    monkeypatch.setattr(image_folder, "list_files", lambda *a: pytest.fail("the cached index was not used"))
    again = image_folder.load_image_folder(folder)
    np.testing.assert_array_equal(again.x_train.paths, dataset.x_train.paths)


def test_the_stream_flag_forces_either_way(tmp_path, monkeypatch):
    from data_helpers import write_batches

    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    folder = make_image_folder(tmp_path / "src")
    assert isinstance(load_dataset(str(folder), stream=True).x_train, FileIndex)  # small, streamed all the same
    assert isinstance(load_dataset(str(folder), stream=False).x_train, np.ndarray)
    write_batches(tmp_path / "batches")
    with pytest.raises(UsageError, match="--stream: the CIFAR batches in .* only image folders stream"):
        load_dataset(str(tmp_path / "batches"), stream=True)
    monkeypatch.setenv("ALEXNET_MEMORY_BUDGET", "lots")
    with pytest.raises(UsageError, match="ALEXNET_MEMORY_BUDGET must be a positive number of bytes"):
        load_dataset(str(folder))


def test_files_gone_since_the_last_listing_are_counted_in_one_warning(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "src", per_class=4)
    assert len(load_dataset(str(folder), stream=True).x_train) == 8
    for name in ("train/cat/0.png", "test/dog/1.png"):
        (folder / name).unlink()
    capsys.readouterr()
    assert len(load_dataset(str(folder), stream=True).x_train) == 7
    err = capsys.readouterr().err
    assert err.count("are gone") == 1 and f"2 file(s) of {folder} are gone since it was last listed" in err
    load_dataset(str(folder), stream=True)  # the same listing again: nothing more to say
    assert "are gone" not in capsys.readouterr().err
