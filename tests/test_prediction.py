"""prediction.py's own behaviour, without training: where class names come from."""

import json

from alexnet.prediction import class_names_for


def test_class_names_come_from_the_run_folder_that_holds_the_model(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"settings": {}, "data": {"class_names": ["cat", "dog"]}}))
    assert class_names_for(run / "model.keras", 2) == ["cat", "dog"]
    assert class_names_for(run / "checkpoints" / "epoch-0001.keras", 2) == ["cat", "dog"]
    assert class_names_for(run / "model.keras", 3) == ["0", "1", "2"]  # names that do not fit the model: numbers
    assert class_names_for(tmp_path / "elsewhere" / "model.keras", 2) == ["0", "1"]
