"""Where an image folder keeps its training and test images, and how they are labelled: detected from the folder.

Three layouts, all read by `image_folder` (in memory or streamed):

- image folder: `train/<class>/*` and `test/<class>/*`; without `test/`, `val/<class>/*` is the test part.
- ImageNet: `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG` (the usual validation-prep script's layout).
  `val/` is the test part, as in every paper; a `test/` beside it has no public labels and is ignored.
- ImageNet as Kaggle ships it: the folder that holds `ILSVRC/Data/CLS-LOC/{train,val}`,
  `LOC_val_solution.csv` and `LOC_synset_mapping.txt`. `val/` is flat: each file's label is the wnid
  that `LOC_val_solution.csv` gives for its name, never its place in a listing.

Labels are positions in the sorted class folder names (wnids for ImageNet, as torchvision numbers
them). Where a synset mapping (`LOC_synset_mapping.txt`, or Caffe's `synset_words.txt`) lies in
the root, class names are its human-readable ones ("tench"), made unique with the wnid where two
synsets share a name ("crane (n02012849)").
"""

import csv
import dataclasses
import logging
import os
import re
import typing
from pathlib import Path
from typing import Optional

from alexnet import console
from alexnet.errors import UsageError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
WNID = re.compile(r"n\d{8}")  # an ImageNet class folder: a WordNet synset id
KAGGLE_IMAGES = Path("ILSVRC") / "Data" / "CLS-LOC"
KAGGLE_VAL_LABELS = "LOC_val_solution.csv"
SYNSET_FILES = ("LOC_synset_mapping.txt", "synset_words.txt")  # "n01440764 tench, Tinca tinca" per line


class Listing(typing.NamedTuple):
    """Every image file of a layout with its label and part (`list_files`)."""

    class_ids: list  # the class folder names (wnids for ImageNet), in label order
    class_names: list  # their display names
    paths: list  # the files (Path): train first, then test, each by class
    labels: list  # int, one a file
    parts: list  # "train" or "test", one a file


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the parts of an image folder are."""

    kind: str  # "image-folder", "imagenet" or "imagenet-kaggle"
    root: Path  # the files' paths are kept relative to it
    train: Path  # a folder of class folders
    test: Path  # a folder of class folders, or (test_labels) of files
    test_labels: Optional[Path] = None  # a CSV naming each test file's wnid (Kaggle's LOC_val_solution.csv)
    synsets: Optional[Path] = None  # a synset mapping: human-readable class names

    @property
    def parts(self):
        """The part folders, relative to the root, whose contents key the cached index."""
        return tuple(str(p.relative_to(self.root)) for p in (self.train, self.test))

    @property
    def label_files(self):
        return tuple(p for p in (self.test_labels, self.synsets) if p is not None)


def detect(root, test_only=False):
    """The layout of the folder `root`; UsageError, naming what is missing, for a folder that is almost one.

    Args:
        root: the `--data` folder.
        test_only: only the test part is read (evaluation): train/ may be missing.
    """
    root = Path(root)
    synsets = next((root / name for name in SYNSET_FILES if (root / name).is_file()), None)
    if (root / KAGGLE_IMAGES).exists() or (root / KAGGLE_VAL_LABELS).exists():
        return _kaggle(root, test_only)
    train, test, val = root / "train", root / "test", root / "val"
    if val.is_dir() and not _class_folders(val) and _files(val):
        raise UsageError(f"--data: {val} holds images but no class folders. ImageNet's flat val/ is labelled by "
                         f"Kaggle's {KAGGLE_VAL_LABELS}: give the folder that holds ILSVRC/ and that file, or "
                         "sort val/ into val/<wnid>/ (the usual validation-prep script)")
    imagenet = train.is_dir() and any(WNID.fullmatch(name) for name in _class_folders(train))
    if val.is_dir() and (imagenet or not test.is_dir()):
        if test.is_dir():
            console.note(log, f"{root} has val/ and test/: ImageNet's test/ has no public labels, so val/ is the "
                              "test split and test/ is ignored")
        elif not imagenet:
            console.note(log, f"{root} has no test/: val/ is the test split")
        return Layout("imagenet" if imagenet else "image-folder", root, train, val, synsets=synsets)
    if not test.is_dir():
        raise UsageError(f"--data: {root} has no test/ folder (nor val/). An image folder holds "
                         "train/<class>/* and test/<class>/* (or val/<class>/*).")
    if not train.is_dir() and not test_only:
        raise UsageError(f"--data: {root} has no train/ folder. An image folder holds "
                         "train/<class>/* and test/<class>/*.")
    return Layout("image-folder", root, train, test, synsets=synsets)


def _kaggle(root, test_only):
    images = root / KAGGLE_IMAGES
    needed = [(images / "val", "the validation images"), (root / KAGGLE_VAL_LABELS, "their labels"),
              (root / SYNSET_FILES[0], "the class names")]
    if not test_only:
        needed.insert(0, (images / "train", "the training images"))
    missing = [f"{path.relative_to(root)} ({what})" for path, what in needed if not path.exists()]
    if missing:
        raise UsageError(f"--data: {root} looks like ImageNet as Kaggle ships it, but lacks "
                         f"{'; '.join(missing)}. It should hold ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG, "
                         f"ILSVRC/Data/CLS-LOC/val/*.JPEG, {KAGGLE_VAL_LABELS} and {SYNSET_FILES[0]}")
    return Layout("imagenet-kaggle", images, images / "train", images / "val", root / KAGGLE_VAL_LABELS,
                  root / SYNSET_FILES[0])


def list_files(layout, test_only=False):
    """Every image file of a layout with its label and part: train first, then test, each by class.

    Returns:
        A `Listing` (class_ids, class_names, paths, labels, parts).

    Raises:
        UsageError: For a layout whose parts disagree (other classes in each, a single class, an empty
            class folder, a test file whose label names no training class).
    """
    train_files = None if test_only and not layout.train.is_dir() else _list_classes(layout.train)
    if layout.test_labels is not None:
        class_ids = sorted(train_files) if train_files is not None else sorted(_read_synsets(layout.synsets))
        test_files = _labelled_flat(layout.test, layout.test_labels, class_ids)
    else:
        test_files = _list_classes(layout.test)
        if train_files is None:
            train_files = {name: [] for name in test_files}
        if sorted(train_files) != sorted(test_files):
            only_train = sorted(set(train_files) - set(test_files))
            only_test = sorted(set(test_files) - set(train_files))
            test_name = layout.test.name
            raise UsageError(f"--data: train/ and {test_name}/ of {layout.root} have different classes "
                             f"(only in train: {_few(only_train)}; only in {test_name}: {_few(only_test)})")
        class_ids = sorted(train_files)
    if train_files is None:
        train_files = {name: [] for name in class_ids}
    if len(class_ids) < 2:
        raise UsageError(f"--data: {layout.root} holds a single class ({class_ids[0]}); classification needs "
                         "two or more")
    paths, labels, parts = [], [], []
    for part, files in (("train", train_files), ("test", test_files)):
        for label, name in enumerate(class_ids):
            paths += files.get(name, [])
            labels += [label] * len(files.get(name, []))
            parts += [part] * len(files.get(name, []))
    return Listing(class_ids, display_names(class_ids, layout.synsets), paths, labels, parts)


def display_names(class_ids, synsets):
    """Human-readable names of the classes where a synset mapping gives them (unique), else the ids."""
    if synsets is None:
        return list(class_ids)
    words = _read_synsets(synsets)
    names = [words.get(wnid, wnid) for wnid in class_ids]
    repeated = {name for name in names if names.count(name) > 1}
    return [f"{name} ({wnid})" if name in repeated else name for name, wnid in zip(names, class_ids)]


def _read_synsets(path):
    """{wnid: first name} of a synset mapping ("n01440764 tench, Tinca tinca" -> "tench")."""
    words = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, text = line.strip().partition(" ")
        if not WNID.fullmatch(wnid):
            raise UsageError(f"--data: line {number} of {path} does not start with a wnid (n########): {line[:80]!r}")
        words[wnid] = text.split(",")[0].strip() or wnid
    return words


def _labelled_flat(folder, labels_csv, class_ids):
    """{wnid: [files]} of a flat folder whose files a CSV labels (ImageId,PredictionString: 'wnid x y x y ...')."""
    known = set(class_ids)
    wanted = {}
    with open(labels_csv, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise UsageError(f"--data: {labels_csv} should start with the header ImageId,PredictionString. "
                             f"Received: {','.join(header)[:80]!r}")
        for number, row in enumerate(reader, 2):
            if not row:
                continue
            wnid = row[1].split()[0] if len(row) > 1 and row[1].split() else ""
            if wnid not in known:
                raise UsageError(f"--data: line {number} of {labels_csv} labels {row[0]} with {wnid or 'nothing'}, "
                                 f"which is not a training class")
            image = row[0].strip()
            if wanted.get(image, wnid) != wnid:  # the same image twice with two labels: which is right is unknown
                raise UsageError(f"--data: {labels_csv} labels {image} twice, with {wanted[image]} and then {wnid} "
                                 f"(line {number}); fix the file so that each image has one label")
            wanted[image] = wnid
    files = {wnid: [] for wnid in class_ids}
    unlabelled = []
    for path in _files(folder):
        wnid = wanted.pop(path.stem, None)
        if wnid is None:
            unlabelled.append(path.name)
        else:
            files[wnid].append(path)
    if unlabelled:
        log.warning(f"{len(unlabelled)} file(s) in {folder} have no label in {labels_csv.name} and are left out: "
                    f"{_few(sorted(unlabelled))}")
    if wanted:
        log.warning(f"{len(wanted)} image(s) that {labels_csv.name} labels are not in {folder}: {_few(sorted(wanted))}")
    if not any(files.values()):
        raise UsageError(f"--data: none of the files in {folder} is labelled by {labels_csv}")
    return files


def _list_classes(folder):
    """{class folder name: [image files, sorted]} of folder/<class>/*, checking that each holds images."""
    classes = _class_folders(folder)
    if not classes:
        raise UsageError(f"--data: {folder} holds no class folders (expected {folder.name}/<class>/*)")
    files = {}
    for name in classes:
        files[name] = _files(folder / name)
        if not files[name]:
            raise UsageError(f"--data: class folder {folder / name} holds no image files "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _class_folders(folder):
    if not folder.is_dir():
        return []
    return sorted(e.name for e in os.scandir(folder) if not e.name.startswith(".") and _is(e, "dir"))


def _files(folder):
    """The image files in a folder (by extension; regular files only), sorted by name."""
    return sorted(Path(e.path) for e in os.scandir(folder)
                  if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and _is(e, "file"))


def _is(entry, kind):
    """Whether a folder entry is a file or a folder; an entry that cannot be followed (a symbolic link loop, a
    link into a folder without permission) is neither: skipped with a warning that names it, as an unreadable
    image is."""
    try:
        return entry.is_dir() if kind == "dir" else entry.is_file()
    except OSError as error:
        if entry.path not in _SKIPPED:  # a folder is listed more than once (detect, then list_files)
            _SKIPPED.add(entry.path)
            log.warning(f"skipped {entry.path}: {error.strerror or error}")
        return False


_SKIPPED = set()  # entries already named in a warning


def _few(names, count=5):
    return (", ".join(names[:count]) + (f" and {len(names) - count} more" if len(names) > count else "")) or "none"
