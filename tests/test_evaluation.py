"""evaluation.py's own behaviour, without training: what a target resolves to and where reports go."""

import json

import pytest

from alexnet import evaluation
from alexnet.errors import UsageError


@pytest.mark.parametrize("data,slug", [
    ("cifar10", "cifar10"), ("/data/cifar10-jpeg.tar.gz", "cifar10-jpeg"), ("/x/My Photos.zip", "My_Photos"),
    ("/x/set.tar.xz", "set"), ("/x/.hidden/", "hidden"), ("/", "data"),
])
def test_slug_names_a_report_folder_for_other_data(data, slug):
    assert evaluation._slug(data) == slug


def _fake_run(folder, files=()):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"settings": {"epochs": 1}}))
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"model")
    return folder


def test_run_model_falls_back_to_best_then_the_newest_checkpoint(tmp_path, capsys):
    run = _fake_run(tmp_path / "a", ["model.keras", "best.keras"])
    assert evaluation.run_model(run) == run / "model.keras"
    run = _fake_run(tmp_path / "b", ["best.keras", "checkpoints/epoch-0001.keras"])
    assert evaluation.run_model(run) == run / "best.keras" and "using its best model" in capsys.readouterr().err
    run = _fake_run(tmp_path / "c", ["checkpoints/epoch-0001.keras", "checkpoints/epoch-0002.keras"])
    assert evaluation.run_model(run) == run / "checkpoints" / "epoch-0002.keras"
    with pytest.raises(UsageError, match="holds no model yet"):
        evaluation.run_model(_fake_run(tmp_path / "d"))


def test_resolve_target_refuses_what_is_not_a_run_or_a_model(tmp_path):
    with pytest.raises(UsageError, match="not a run folder"):
        evaluation.resolve_target(tmp_path)
    with pytest.raises(UsageError, match="no such run folder or model file"):
        evaluation.resolve_target(tmp_path / "missing.keras")
    (tmp_path / "m.keras").write_bytes(b"x")
    assert evaluation.resolve_target(tmp_path / "m.keras") == (tmp_path / "m.keras", None)
