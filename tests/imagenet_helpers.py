"""A generated mini-ImageNet: a few wnid classes in both layouts, with ImageNet's known oddities.

Each class has its own colour, so a test can tell from the pixels which class a file
really belongs to, whatever its name or its place in a listing. The oddities of the
real set are here too: a CMYK JPEG, a grayscale JPEG and a PNG named `.JPEG`
(as `n02105855_2933.JPEG` is), and images of several sizes.
"""

import csv

import numpy as np
from PIL import Image

# wnid -> (name line of the synset mapping, colour). Two classes share the name "crane", as in ImageNet.
CLASSES = {
    "n01440764": ("tench, Tinca tinca", (200, 40, 40)),
    "n01443537": ("goldfish, Carassius auratus", (40, 200, 40)),
    "n02012849": ("crane", (40, 40, 200)),
    "n02105855": ("Shetland sheepdog, Shetland sheep dog, Shetland", (200, 200, 40)),
    "n03126707": ("crane", (40, 200, 200)),
    "n04592741": ("wing", (200, 40, 200)),
}
SIZES = ((48, 64), (64, 48), (56, 56), (40, 80))  # (height, width): photos come in all shapes


def _picture(colour, size, rng):
    """An image of one colour with a little noise (JPEG keeps it recognisable)."""
    base = np.broadcast_to(np.asarray(colour, np.int16), (*size, 3))
    return np.clip(base + rng.integers(-10, 11, size=(*size, 3)), 0, 255).astype(np.uint8)


def _save(path, array, kind="rgb"):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if kind == "cmyk":
        image.convert("CMYK").save(path, format="JPEG", quality=95)
    elif kind == "gray":
        image.convert("L").save(path, format="JPEG", quality=95)
    elif kind == "png":
        image.save(path, format="PNG")  # named .JPEG all the same
    else:
        image.save(path, format="JPEG", quality=95)


def _kind(wnid, i):
    """Which oddity file i of a class is: the real set's own cases, one each in train and in val."""
    if wnid == "n02105855" and i == 0:
        return "png"
    if wnid == "n01443537" and i == 1:
        return "cmyk"
    if wnid == "n04592741" and i == 2:
        return "gray"
    return "rgb"


def make_mini_imagenet(root, layout="folders", train_per_class=8, val_per_class=3, seed=0, names=True):
    """Writes a mini-ImageNet under root and returns {val file name: wnid} (the truth).

    layout: "folders" (train/<wnid>/, val/<wnid>/, and an unlabelled flat test/ beside them)
    or "kaggle" (ILSVRC/Data/CLS-LOC/{train/<wnid>/, val/ flat}, LOC_val_solution.csv,
    LOC_synset_mapping.txt, in the row order of a shuffled listing). names: the folders layout also
    gets a LOC_synset_mapping.txt (Kaggle's always has one).
    """
    rng = np.random.default_rng(seed)
    images = root / "ILSVRC" / "Data" / "CLS-LOC" if layout == "kaggle" else root
    truth = {}
    for c, (wnid, (_, colour)) in enumerate(CLASSES.items()):
        for i in range(train_per_class):
            _save(images / "train" / wnid / f"{wnid}_{i}.JPEG", _picture(colour, SIZES[(i + c) % len(SIZES)], rng),
                  _kind(wnid, i))
    # Validation files are numbered across classes in a shuffled order, as ILSVRC2012_val_00000001.JPEG... are.
    val = [(wnid, i) for wnid in CLASSES for i in range(val_per_class)]
    for number, k in enumerate(rng.permutation(len(val)), 1):
        wnid, i = val[k]
        name = f"ILSVRC2012_val_{number:08d}"
        folder = images / "val" if layout == "kaggle" else images / "val" / wnid
        _save(folder / f"{name}.JPEG", _picture(CLASSES[wnid][1], SIZES[(i + number) % len(SIZES)], rng),
              _kind(wnid, i + 1))
        truth[f"{name}.JPEG"] = wnid
    if layout == "kaggle":
        rows = [(name[:-len(".JPEG")], f"{wnid} 1 2 30 40 {wnid} 3 4 20 30") for name, wnid in truth.items()]
        with open(root / "LOC_val_solution.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["ImageId", "PredictionString"])
            writer.writerows([rows[k] for k in rng.permutation(len(rows))])
        (root / "LOC_sample_submission.csv").write_text("ImageId,PredictionString\n")
    else:
        _save(root / "test" / "ILSVRC2012_test_00000001.JPEG", _picture((0, 0, 0), (32, 32), rng))
    if layout == "kaggle" or names:
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {name}\n" for w, (name, _) in CLASSES.items()))
    return truth


def colour_class(image):
    """The wnid whose colour an image (uint8 RGB) is closest to."""
    mean = np.asarray(image, np.float64).reshape(-1, 3).mean(axis=0)
    return min(CLASSES, key=lambda wnid: np.abs(mean - CLASSES[wnid][1]).sum())
