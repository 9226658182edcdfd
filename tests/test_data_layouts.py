"""ImageNet's layouts on a generated mini-ImageNet: detection, errors that name what is missing, labels, oddities."""

import os
import random
import shutil

import numpy as np
import pytest
from data_helpers import make_image_folder
from imagenet_helpers import CLASSES, colour_class, make_mini_imagenet
from PIL import Image

from alexnet.data import layouts, load_dataset
from alexnet.errors import UsageError
from alexnet.pipeline import streams

NAMES = ["tench", "goldfish", "crane (n02012849)", "Shetland sheepdog", "crane (n03126707)", "wing"]


@pytest.fixture(scope="module", params=["folders", "kaggle"])
def mini(request, tmp_path_factory):
    """(layout, root, {val file name: wnid}) of a mini-ImageNet in each layout."""
    root = tmp_path_factory.mktemp(f"mini-{request.param}")
    return request.param, root, make_mini_imagenet(root, request.param)


def _labels_by_file(layout):
    class_ids, _, paths, labels, parts = layouts.list_files(layout)
    return {(part, path.name): class_ids[label] for path, label, part in zip(paths, labels, parts)}


def test_both_layouts_are_detected_with_human_readable_unique_names(mini, capsys):
    kind, root, truth = mini
    layout = layouts.detect(root)
    assert layout.kind == {"folders": "imagenet", "kaggle": "imagenet-kaggle"}[kind]
    class_ids, names, paths, labels, parts = layouts.list_files(layout)
    assert class_ids == sorted(CLASSES) and names == NAMES  # sorted wnids, as torchvision numbers them
    assert parts.count("train") == 6 * 8 and parts.count("test") == len(truth) == 18
    if kind == "folders":  # test/ has no labels: ignored, with a note
        assert "val/ is the test split and test/ is ignored" in capsys.readouterr().err
        assert not any("test_0000" in p.name for p in paths)


def test_validation_labels_come_from_the_wnid_never_from_the_listing_order(mini, monkeypatch):
    kind, root, truth = mini
    layout = layouts.detect(root)
    labelled = _labels_by_file(layout)
    assert {name: wnid for (part, name), wnid in labelled.items() if part == "test"} == truth

    real_scandir = os.scandir

    def shuffled(path):
        entries = list(real_scandir(path))
        random.Random(str(path)).shuffle(entries)
        return iter(entries)

    monkeypatch.setattr(layouts.os, "scandir", shuffled)
    assert _labels_by_file(layout) == labelled


def test_the_decoded_pixels_agree_with_the_labels(mini):
    kind, root, truth = mini
    dataset = load_dataset(str(root), stream=False)
    assert dataset.class_names == NAMES and dataset.class_ids == sorted(CLASSES)
    for images, labels in ((dataset.x_train, dataset.y_train), (dataset.x_test, dataset.y_test)):
        coloured = [i for i, image in enumerate(images) if np.ptp(image.astype(int).mean(axis=(0, 1))) > 20]
        assert len(coloured) == len(images) - 1  # all but the grayscale JPEG of each part
        assert all(colour_class(images[i]) == dataset.class_ids[labels[i]] for i in coloured)


def test_the_imagenet_recipe_streams_the_folder_it_would_fit_in_memory(mini):
    from alexnet.data import FileIndex
    from alexnet.data.splits import splits_for
    from alexnet.settings.config import TrainConfig

    _, root, _ = mini
    splits = splits_for(TrainConfig(data=str(root), recipe="imagenet", val_size=6))
    assert isinstance(splits.x_train, FileIndex) and len(splits.x_test) == 18
    assert splits.class_ids == sorted(CLASSES)
    in_memory = splits_for(TrainConfig(data=str(root), recipe="imagenet", val_size=6, stream=False))
    assert isinstance(in_memory.x_train, np.ndarray)


def _break(root, what):
    images = root / "ILSVRC" / "Data" / "CLS-LOC"
    if what == "labels":
        (root / "LOC_val_solution.csv").unlink()
    elif what == "names":
        (root / "LOC_synset_mapping.txt").unlink()
    elif what == "train":
        shutil.rmtree(images / "train")
    elif what == "unknown wnid":
        text = (root / "LOC_val_solution.csv").read_text().splitlines()
        text[1] = text[1].split(",")[0] + ",n09999999 1 2 3 4"
        (root / "LOC_val_solution.csv").write_text("\n".join(text) + "\n")
    elif what == "two labels":  # the second row's image again, with the first row's label (another class)
        text = (root / "LOC_val_solution.csv").read_text().splitlines()
        first, second = text[1].split(","), text[2].split(",")
        if first[1].split()[0] == second[1].split()[0]:
            second = text[3].split(",")
        text.append(f"{second[0]},{first[1]}")
        (root / "LOC_val_solution.csv").write_text("\n".join(text) + "\n")
    elif what == "bad header":
        text = (root / "LOC_val_solution.csv").read_text().splitlines()
        (root / "LOC_val_solution.csv").write_text("\n".join(["id,label"] + text[1:]) + "\n")
    return root


@pytest.mark.parametrize("what,message", [
    ("labels", r"lacks LOC_val_solution\.csv \(their labels\)"),
    ("names", r"lacks LOC_synset_mapping\.txt \(the class names\)"),
    ("train", r"lacks ILSVRC/Data/CLS-LOC/train \(the training images\)"),
    ("unknown wnid", r"labels ILSVRC2012_val_\d+ with n09999999, which is not a training class"),
    ("bad header", r"should start with the header ImageId,PredictionString"),
    ("two labels", r"labels ILSVRC2012_val_\d+ twice, with n\d+ and then n\d+ \(line \d+\); fix the file"),
])
def test_an_almost_right_kaggle_folder_is_refused_naming_what_is_missing(tmp_path, what, message):
    make_mini_imagenet(tmp_path, "kaggle", train_per_class=2, val_per_class=1)
    with pytest.raises(UsageError, match=message):
        load_dataset(str(_break(tmp_path, what)))


def test_a_flat_val_folder_without_its_labels_is_refused_with_what_to_do(tmp_path):
    make_mini_imagenet(tmp_path, "kaggle", train_per_class=2, val_per_class=1)
    with pytest.raises(UsageError, match=r"val holds images but no class folders.*LOC_val_solution\.csv"):
        load_dataset(str(tmp_path / "ILSVRC" / "Data" / "CLS-LOC"))


def test_val_files_without_a_label_are_left_out_with_a_warning(tmp_path, capsys):
    make_mini_imagenet(tmp_path, "kaggle", train_per_class=2, val_per_class=1)
    val = tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    shutil.copy(next(val.iterdir()), val / "stray.JPEG")
    dataset = load_dataset(str(tmp_path), stream=True)
    assert len(dataset.x_test) == 6
    assert "1 file(s) in" in capsys.readouterr().err


def test_a_plain_image_folder_with_val_and_no_test_tests_on_val(tmp_path, capsys):
    make_mini_imagenet(tmp_path, "folders", train_per_class=2, val_per_class=1, names=False)
    shutil.rmtree(tmp_path / "test")
    for wnid in CLASSES:  # class folders that are not wnids: an ordinary image folder
        for part in ("train", "val"):
            os.rename(tmp_path / part / wnid, tmp_path / part / f"class-{wnid[-3:]}")
    layout = layouts.detect(tmp_path)
    assert (layout.kind, layout.test.name) == ("image-folder", "val")
    assert "val/ is the test split" in capsys.readouterr().err
    assert load_dataset(str(tmp_path), stream=True).class_names == sorted(f"class-{w[-3:]}" for w in CLASSES)


# --- ImageNet's odd files: a CMYK JPEG, a grayscale JPEG, a PNG named .JPEG ------------------------------------------


ODDITIES = {"cmyk": "n01443537/n01443537_1.JPEG", "gray": "n04592741/n04592741_2.JPEG",
            "png": "n02105855/n02105855_0.JPEG"}


def _decoders():
    from alexnet.data import decode_image
    from alexnet.pipeline.grain_engine import decode_transformed

    transform = streams.Transform((32, 32), "center")
    found = {"PIL (in memory)": lambda path: decode_image(path, (32, 32)),
             "Grain (PIL)": lambda path: decode_transformed(path, transform)}
    try:
        import tensorflow as tf

        from alexnet.pipeline import tf_engine
    except ImportError:
        return found
    found["tf.data"] = lambda path: tf_engine._decode(tf.constant(str(path)), transform,
                                                      tf.constant([0, 0], tf.int64)).numpy()
    return found


@pytest.mark.parametrize("engine", ["PIL (in memory)", "Grain (PIL)", "tf.data"])
@pytest.mark.parametrize("oddity", sorted(ODDITIES))
def test_imagenet_oddities_decode_to_rgb_on_every_engine(tmp_path_factory, engine, oddity):
    decoders = _decoders()
    if engine not in decoders:
        pytest.skip(f"{engine} is not installed")
    root = tmp_path_factory.mktemp("odd")
    make_mini_imagenet(root, "folders", train_per_class=3, val_per_class=1)
    path = root / "train" / ODDITIES[oddity]
    with Image.open(path) as opened:  # the fixture holds what it says
        assert (opened.format, opened.mode) == {"cmyk": ("JPEG", "CMYK"), "gray": ("JPEG", "L"),
                                                "png": ("PNG", "RGB")}[oddity]
    image = decoders[engine](path)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    if oddity == "gray":
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    else:
        assert colour_class(image) == path.parent.name


def test_a_symbolic_link_loop_is_skipped_with_a_warning_that_names_it(tmp_path, capsys):
    make_image_folder(tmp_path, per_class=3)
    os.symlink("loop.png", tmp_path / "train" / "cat" / "loop.png")  # a link to itself: ELOOP when followed
    os.symlink("away", tmp_path / "train" / "away")  # a class folder that is a loop
    listing = layouts.list_files(layouts.detect(tmp_path))
    err = capsys.readouterr().err
    assert len(listing.paths) == 12 and listing.class_ids == ["cat", "dog"]  # the images, all of them
    for name in ("cat/loop.png", "away"):
        line = f"skipped {tmp_path / 'train' / name}: Too many levels of symbolic links"
        assert err.count(line) == 1, err
