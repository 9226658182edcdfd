"""prediction.py's own behaviour, without training: where class names come from, what a target must be."""

import json

import pytest

from alexnet.errors import UsageError
from alexnet.results.loading import resolve_target
from alexnet.results.prediction import class_names_for, image_files, predict


def test_class_names_come_from_the_run_folder_that_holds_the_model(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"settings": {}, "data": {"class_names": ["cat", "dog"]}}))
    for model in (run / "model.keras", run / "checkpoints" / "epoch-0001.keras", tmp_path / "elsewhere.keras"):
        model.write_bytes(b"x")
    home = lambda model: resolve_target(model).home  # noqa: E731
    assert class_names_for(home(run / "model.keras"), 2) == ["cat", "dog"]
    assert class_names_for(home(run / "checkpoints" / "epoch-0001.keras"), 2) == ["cat", "dog"]
    assert class_names_for(home(run / "model.keras"), 3) == ["0", "1", "2"]  # names that do not fit: numbers
    assert class_names_for(home(tmp_path / "elsewhere.keras"), 2) == ["0", "1"]


def test_predict_on_a_folder_that_is_not_a_run_says_so(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(UsageError, match="is not a run folder .no config.json.; give a run folder or a .keras file"):
        predict(tmp_path / "photos", [tmp_path / "cat.jpg"])


def test_folders_are_walked_for_their_image_files_and_an_empty_one_is_refused(tmp_path):
    for name in ("b/2.PNG", "b/1.jpg", "a.jpeg", "notes.txt", "b/deeper/3.webp"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / name).write_bytes(b"")
    single = tmp_path / "single.jpg"
    assert image_files([single, tmp_path / "photos"]) == [single] + [
        tmp_path / "photos" / name for name in ("a.jpeg", "b/1.jpg", "b/2.PNG", "b/deeper/3.webp")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="empty holds no image files"):
        image_files([tmp_path / "empty"])
