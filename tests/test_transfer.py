"""Starting from trained weights: torchvision's AlexNet imported to the last digit, and fine-tuning with --init-from.

The real torchvision file cannot be downloaded here, so the reference is built in plain torch.nn with
torchvision's state-dict keys and a seeded random init (torchvision_helpers.py).
"""

import importlib.util
import json
import os
import pickle
import shutil

import numpy as np
import pytest
from conftest import TINY_SETTINGS, run_cli

from alexnet import TrainConfig, UsageError
from alexnet.cli import main
from alexnet.data import CIFAR10_CLASSES

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
FEATURES = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "conv4", "bn4", "conv5", "bn5")


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    """torchvision-layout state dicts saved with torch.save: 1000 classes (ImageNet's) and 10 classes."""
    pytest.importorskip("torch")
    import torch
    from torchvision_helpers import torchvision_alexnet

    folder = tmp_path_factory.mktemp("torch")
    files = {}
    for classes in (1000, 10):
        model = torchvision_alexnet(classes, seed=classes)
        files[classes] = folder / f"alexnet-{classes}.pth"
        torch.save(model.state_dict(), files[classes])
        files[f"model{classes}"] = model
    return files


@pytest.fixture(scope="module")
def imported(torch_files, tmp_path_factory):
    """The 1000-class file converted by the command."""
    out = tmp_path_factory.mktemp("imported") / "imagenet.keras"
    assert main(["import-weights", str(torch_files[1000]), "--out", str(out)]) == 0
    return out


@needs_torch
def test_the_converted_model_computes_what_torch_computes(torch_files, imported):
    from torchvision_helpers import torch_probabilities

    from alexnet.model import importing
    from alexnet.model.layers import model_card
    from alexnet.results.loading import load_model

    model = load_model(imported)
    assert model.name == "alexnet_torchvision" and model.count_params() == 61_100_840
    assert all(weight.dtype == "float32" for weight in model.weights)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}  # whatever this CPU trains in
    card = model_card(model)
    assert (card.class_names[0], card.class_names[-1], len(card.class_names), card.crop) == \
        ("tench", "toilet tissue", 1000, "center")
    images = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
    expected = torch_probabilities(torch_files["model1000"], images)
    assert expected.max(axis=1).min() > 0.2  # far from uniform (0.001): the comparison can fail
    probabilities = np.asarray(model.predict(images, verbose=0))
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert (probabilities.argmax(axis=1) == expected.argmax(axis=1)).all()
    # The classic pitfall, as a control: fc6 without its (C, H, W) -> (H, W, C) permutation disagrees.
    tensors = importing.read_state_dict(torch_files[1000])
    model.get_layer("fc1").set_weights([tensors["classifier.1.weight"].T, tensors["classifier.1.bias"]])
    assert np.abs(np.asarray(model.predict(images, verbose=0)) - expected).max() > 0.1


@needs_torch
def test_a_pth_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = tmp_path / "alexnet.pth"
    with open(evil, "wb") as file:
        pickle.dump({"features.0.weight": Payload()}, file)
    assert main(["import-weights", str(evil), "--out", str(tmp_path / "out.keras")]) == 1
    error = capsys.readouterr().err
    assert f"{evil} was refused" in error and "code is refused, never run" in error
    assert not marker.exists() and not (tmp_path / "out.keras").exists()


@needs_torch
def test_a_state_dict_that_is_not_torchvisions_alexnet_is_refused_naming_the_file(torch_files, tmp_path, capsys):
    import torch

    state = torch.load(torch_files[10], weights_only=True)
    wrong = {**state, "features.3.weight": torch.zeros(128, 64, 5, 5)}
    torch.save(wrong, tmp_path / "wrong.pth")
    fewer = {key: value for key, value in state.items() if not key.startswith("classifier.6")}
    torch.save(fewer, tmp_path / "fewer.pth")
    for name, says in (("wrong.pth", "wrong shapes: features.3.weight (128, 64, 5, 5) (expected (192, 64, 5, 5))"),
                       ("fewer.pth", "missing ['classifier.6.bias', 'classifier.6.weight']")):
        assert main(["import-weights", str(tmp_path / name), "--out", str(tmp_path / "out.keras")]) == 1
        error = capsys.readouterr().err
        assert f"{tmp_path / name} is not a torchvision AlexNet state dict" in error and says in error, error
    # torch.hub's rule: a name with a hash prefix must match the file's sha256.
    shutil.copy(torch_files[10], tmp_path / "alexnet-owt-7be5be79.pth")
    assert main(["import-weights", str(tmp_path / "alexnet-owt-7be5be79.pth"), "--out", str(tmp_path / "x.keras")]) == 1
    assert "does not start with 7be5be79" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.keras"))
    # Another name that happens to end in hex digits (a date) is only warned about.
    shutil.copy(torch_files[10], tmp_path / "alexnet-20240315.pth")
    assert main(["import-weights", str(tmp_path / "alexnet-20240315.pth"), "--out", str(tmp_path / "y.keras")]) == 0
    assert "does not start with 20240315" in capsys.readouterr().err and (tmp_path / "y.keras").is_file()


def test_the_torchvision_variant_is_torchvisions_architecture(capsys):
    assert main(["summary", "--model", "alexnet-torchvision", "--num-classes", "1000", "--input-size", "224"]) == 0
    out = capsys.readouterr().out
    assert "alexnet-torchvision: 61,100,840 parameters at 224x224x3, 1000 classes" in out
    assert "BatchNormalization" not in out and "avgpool" in out


def _tiny_keras(path, name="alexnet", classes=4):
    from alexnet.model.builders import build_model

    build_model(name, input_shape=(32, 32, 3), num_classes=classes, image_size=67,
                card={"class_names": [f"c{i}" for i in range(classes)]}).save(path)
    return path


def test_init_from_sets_the_model_and_image_size_unless_given(tmp_path):
    source = _tiny_keras(tmp_path / "lrn.keras", "alexnet-lrn")
    config = TrainConfig(recipe="finetune", init_from=str(source)).validate()
    assert (config.model, config.image_size, config.freeze) == ("alexnet-lrn", 67, "none")
    assert TrainConfig(recipe="finetune", init_from=str(source), image_size=99).validate().image_size == 99
    assert TrainConfig().validate().model == "alexnet"
    refusals = [
        (TrainConfig(init_from=str(source), model="alexnet"), "--model alexnet: --init-from .* holds a alexnet-lrn"),
        (TrainConfig(init_from=str(source), model="alexnet", image_size=67), "holds a alexnet-lrn model"),
        (TrainConfig(recipe="finetune"), "--recipe finetune fine-tunes trained weights: give --init-from"),
        (TrainConfig(freeze="features"), "--freeze features keeps trained convolutional layers: give --init-from"),
        (TrainConfig(init_from=str(source), freeze="all"), "--freeze must be one of none, features"),
        (TrainConfig(init_from=str(tmp_path / "nothing")), "no such run folder or model file"),
        (TrainConfig(init_from=str(tmp_path)), "not a run folder .* and not a .keras file"),
    ]
    (tmp_path / "notes.keras").write_text("not a zip")
    refusals.append((TrainConfig(init_from=str(tmp_path / "notes.keras")), "is not a Keras model file"))
    for config, message in refusals:
        with pytest.raises(UsageError, match=message):
            config.validate()


def _weights(path, names):
    from alexnet.results.loading import load_model

    model = load_model(path)
    return {name: [np.asarray(w) for w in model.get_layer(name).get_weights()] for name in names}, model


def _three_classes(cifar_slice, target):
    for part in ("train", "test"):
        for name in CIFAR10_CLASSES[:3]:
            shutil.copytree(cifar_slice / part / name, target / part / name)
    return target


FINETUNE = ["--recipe", "finetune", "--epochs", "1", "--batch-size", "16", "--limit-train", "48", "--val-size", "15",
            "--limit-test", "15"]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_fine_tuning_from_a_run_keeps_frozen_features_bit_for_bit(backend, cifar_slice, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    tiny = [part for key, value in TINY_SETTINGS.items() for part in (f"--{key.replace('_', '-')}", str(value))]
    source = tmp_path / "source"
    done = run_cli("train", "--backend", backend, "--data", cifar_slice, *tiny, "--epochs", "1", "--run-dir", source)
    assert done.returncode == 0, done.stderr
    data = _three_classes(cifar_slice, tmp_path / "three")
    frozen, unfrozen = tmp_path / "frozen", tmp_path / "unfrozen"
    done = run_cli("train", "--backend", backend, "--data", data, "--init-from", source, "--freeze", "features",
                   *FINETUNE, "--run-dir", frozen)
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert f"Started from {source / 'model.keras'} (alexnet): kept {', '.join(FEATURES)}, fc1, fc2" in said
    assert "new: predictions (12,291 parameters, 3 classes); frozen: conv1, bn1," in said
    theirs, _ = _weights(source / "model.keras", FEATURES)
    ours, model = _weights(frozen / "model.keras", FEATURES)
    assert model.output_shape[-1] == 3 and model.input_shape[1:] == (32, 32, 3)
    for name in FEATURES:
        assert all(np.array_equal(a, b) for a, b in zip(theirs[name], ours[name])), name
    config = json.loads((frozen / "config.json").read_text())
    assert config["settings"]["init_from"] == str(source) and config["settings"]["image_size"] == 67
    from alexnet.files import sha256_of

    assert config["init"]["sha256"] == sha256_of(source / "model.keras") and config["init"]["freeze"] == "features"
    done = run_cli("train", "--backend", backend, "--data", data, "--init-from", source / "model.keras", *FINETUNE,
                   "--run-dir", unfrozen)
    assert done.returncode == 0, done.stderr
    moved, _ = _weights(unfrozen / "model.keras", ("conv1", "conv5"))
    assert not np.array_equal(moved["conv1"][0], theirs["conv1"][0])
    assert not np.array_equal(moved["conv5"][0], theirs["conv5"][0])
    # Such a run is a run like any other: predict names its classes, it resumes, it evaluates.
    image = next((data / "test" / CIFAR10_CLASSES[1]).iterdir())
    done = run_cli("predict", frozen / "model.keras", image, "--backend", backend)
    assert done.returncode == 0 and set(CIFAR10_CLASSES[:3]) <= set(done.stdout.replace(",", " ").split()), done
    done = run_cli("train", "--resume", frozen, "--epochs", "2")
    assert done.returncode == 0 and "Resuming after epoch 1" in done.stdout + done.stderr, done.stderr
    assert len(json.loads((frozen / "metrics.json").read_text())) and (frozen / "history.csv").read_text().count(
        "\n") == 3
    ours, _ = _weights(frozen / "model.keras", FEATURES)
    assert all(np.array_equal(a, b) for a, b in zip(theirs["conv3"], ours["conv3"]))  # still frozen after resume


@needs_torch
def test_a_converted_ten_class_model_evaluates_and_predicts_with_its_class_names(torch_files, cifar_slice, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(CIFAR10_CLASSES) + "\n")
    out = tmp_path / "ten.keras"
    done = run_cli("import-weights", torch_files[10], "--out", out, "--class-names", names)
    assert done.returncode == 0, done.stderr
    assert "10 classes (names from" in done.stdout + done.stderr
    done = run_cli("evaluate", out, "--data", cifar_slice, "--limit-test", "20", "--out", tmp_path / "report")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["test_images"] == 20 and 0 <= report["top1_accuracy"] <= 1
    images = sorted((cifar_slice / "test" / "cat").iterdir())[:2]
    done = run_cli("predict", out, *images, "--top-k", "10", "--json")
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert [a["file"] for a in answers] == [str(i) for i in images]
    assert {p["class"] for p in answers[0]["predictions"]} == set(CIFAR10_CLASSES)


def test_a_model_without_its_run_reads_files_as_its_card_says():
    from alexnet.pipeline import streams

    assert streams.evaluation_transform({}, (224, 224), "center").crop == "center"  # torchvision's weights
    assert streams.evaluation_transform({}, (32, 32)).crop == "resize"
    run = {"settings": {"recipe": "cpu"}, "data": {"streamed": False}}
    assert streams.evaluation_transform(run, (32, 32), "center").crop == "resize"  # its run's own rule wins


def test_a_head_for_other_classes_is_new_even_at_the_same_count(tmp_path):
    from alexnet.model import transfer
    from alexnet.model.builders import build_model

    source = _tiny_keras(tmp_path / "four.keras")
    model = build_model("alexnet", input_shape=(32, 32, 3), num_classes=4, image_size=67)
    kept, new = transfer.initialize(model, source)
    assert "predictions" in kept and not new
    kept, new = transfer.initialize(model, source, skip=("predictions",))
    assert new == ["predictions"] and "conv1" in kept and "fc2" in kept
