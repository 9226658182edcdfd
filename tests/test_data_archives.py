import tarfile

import pytest
from data_helpers import make_image_folder

from alexnet import data
from alexnet.data import archives, cache
from alexnet.errors import AlexnetError


def test_archive_is_extracted_once_and_unwrapped(tmp_path):
    root = make_image_folder(tmp_path / "src" / "mydata")
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="mydata")
    dataset = data.load_dataset(str(archive))
    assert dataset.x_train.shape == (6, 8, 8, 3)
    assert archives.extract_archive(archive) == archives.extract_archive(archive)


def test_archive_with_an_escaping_member_is_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(archive, "w") as tar:
        tar.add(payload, arcname="../escaped.txt")
    with pytest.raises(AlexnetError, match="cannot extract"):
        data.load_dataset(str(archive))
    assert not (cache.cache_dir() / "escaped.txt").exists()


def test_concurrent_extractions_of_one_archive_both_succeed(tmp_path, monkeypatch):
    """Forces the interleaving: the other process's rename lands while this one is extracting."""
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "src" / "mydata")
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="mydata")
    real_open = tarfile.open

    def open_after_the_other_process_won(*args, **kwargs):
        monkeypatch.setattr(tarfile, "open", real_open)
        winner = archives.extract_archive(archive)  # the "other process" finishes first
        assert winner.is_dir()
        return real_open(*args, **kwargs)

    monkeypatch.setattr(tarfile, "open", open_after_the_other_process_won)
    target = archives.extract_archive(archive)
    assert (target / "mydata" / "train" / "cat" / "0.png").is_file()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


@pytest.mark.parametrize("suffix,mode", [(".tar.xz", "w:xz"), (".tar.bz2", "w:bz2")])
def test_xz_and_bzip2_tar_archives(tmp_path, suffix, mode):
    root = make_image_folder(tmp_path / "src" / "mydata")
    archive = tmp_path / f"mydata{suffix}"
    with tarfile.open(archive, mode) as tar:
        tar.add(root, arcname="mydata")
    assert data.load_dataset(str(archive)).x_train.shape == (6, 8, 8, 3)
