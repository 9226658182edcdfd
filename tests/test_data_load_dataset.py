import pytest

from alexnet import data
from alexnet.errors import UsageError


def test_missing_path_and_non_archive_file(tmp_path):
    with pytest.raises(UsageError, match="no such file or folder"):
        data.load_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UsageError, match="not an archive"):
        data.load_dataset(str(tmp_path / "x.txt"))
