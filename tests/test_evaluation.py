"""evaluation.py's own behaviour, without training: what a target resolves to and where reports go."""

import json

import pytest

from alexnet.errors import UsageError
from alexnet.results import evaluation
from alexnet.results.loading import resolve_target
from alexnet.runs import RunFolder


@pytest.mark.parametrize("data,slug", [
    ("cifar10", "cifar10"), ("/data/cifar10-jpeg.tar.gz", "cifar10-jpeg"), ("/x/My Photos.zip", "My_Photos"),
    ("/x/set.tar.xz", "set"), ("/x/.hidden/", "hidden"), ("/", "data"), ("/x/set.tar", "set"),
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


def test_a_run_folder_gives_its_model_then_best_then_the_newest_checkpoint(tmp_path, capsys):
    run = _fake_run(tmp_path / "a", ["model.keras", "best.keras"])
    assert resolve_target(run).model_file == run / "model.keras"
    run = _fake_run(tmp_path / "b", ["best.keras", "checkpoints/epoch-0001.keras"])
    assert resolve_target(run).model_file == run / "best.keras" and "using its best model" in capsys.readouterr().err
    run = _fake_run(tmp_path / "c", ["checkpoints/epoch-0001.keras", "checkpoints/epoch-0002.keras"])
    assert resolve_target(run).model_file == run / "checkpoints" / "epoch-0002.keras"
    with pytest.raises(UsageError, match="holds no model yet"):
        resolve_target(_fake_run(tmp_path / "d"))


def test_resolve_target_refuses_what_is_not_a_run_or_a_model(tmp_path):
    with pytest.raises(UsageError, match="not a run folder"):
        resolve_target(tmp_path)
    with pytest.raises(UsageError, match="no such run folder or model file"):
        resolve_target(tmp_path / "missing.keras")
    (tmp_path / "m.keras").write_bytes(b"x")
    target = resolve_target(tmp_path / "m.keras")
    assert (target.model_file, target.run, target.home) == (tmp_path / "m.keras", None, None)
    run = _fake_run(tmp_path / "run", ["best.keras"])
    target = resolve_target(run / "best.keras")  # a model file in a run: the run's class names, not its split
    assert (target.run, target.home) == (None, RunFolder(run))


@pytest.mark.parametrize("data,limit,name", [
    (None, None, "evaluation"), ("cifar10", None, "evaluation-cifar10"), ("cifar10", 100, "evaluation-cifar10-100"),
])
def test_evaluation_folders_are_named_for_what_was_evaluated(tmp_path, data, limit, name):
    assert RunFolder(tmp_path).evaluation_dir(data, limit) == tmp_path / name
