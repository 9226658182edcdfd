"""Data sources: CIFAR-10 from Keras, image folders, CIFAR batch folders and archives.

Every source gives the same thing, a `Dataset` of in-memory uint8 arrays:
images (N, H, W, C) and int64 labels (N,) for the train and test parts, plus
the class names in label order. Decoding image files is slow, so decoded
folders are cached as `.npy` files keyed by the files' names, sizes and
modification times.
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from alexnet.errors import AlexnetError, UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning


@dataclasses.dataclass
class Dataset:
    """Images and labels of one source, as loaded, before any split."""

    x_train: np.ndarray  # (N, H, W, C) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray  # (M, H, W, C) uint8
    y_test: np.ndarray  # (M,) int64
    class_names: list
    source: str  # what was loaded, for config.json and messages
    skipped: list = dataclasses.field(default_factory=list)  # unreadable files left out


def cache_dir():
    """Returns the folder for decoded datasets and extracted archives."""
    if os.environ.get("ALEXNET_CACHE_DIR"):
        return Path(os.environ["ALEXNET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alexnet"


def load_dataset(data="cifar10", storage_size=None, strict=False):
    """Loads a dataset by the CLI's `--data` value.

    Args:
        data: "cifar10" (Keras's download), or the path of an image folder
            (`train/<class>/*`, `test/<class>/*`), of a `cifar-10-batches-py`
            folder, or of a .tar.gz/.tgz/.tar/.zip archive of either.
        storage_size: (height, width) to store images at; None keeps the
            source's own size (for folders: the most common size in it).
        strict: Fail on unreadable image files instead of skipping them.

    Returns:
        A `Dataset`.

    Raises:
        UsageError: If the path does not hold a dataset this function reads.
        AlexnetError: If the data cannot be read or downloaded.
    """
    if data == "cifar10":
        dataset = load_keras_cifar10()
    else:
        path = Path(data).expanduser()
        if not path.exists():
            raise UsageError(f"--data: no such file or folder: {data}. Give 'cifar10' or an image folder, "
                             "a cifar-10-batches-py folder or an archive of one.")
        if path.is_file():
            if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
                raise UsageError(f"--data: {data} is a file but not an archive ({', '.join(ARCHIVE_SUFFIXES)}).")
            path = extract_archive(path)
        path = _dataset_root(path)
        batches = _find_cifar_batches(path)
        if batches is None:
            return load_image_folder(path, storage_size=storage_size, strict=strict)
        dataset = read_cifar_batches(batches)
    if storage_size is not None and tuple(storage_size) != dataset.x_train.shape[1:3]:
        dataset = _resized(dataset, storage_size)
    return dataset


# --- CIFAR-10 from keras.datasets -------------------------------------------------------


def load_keras_cifar10():
    """Loads CIFAR-10 with `keras.datasets.cifar10.load_data()` (downloaded once, cached by Keras)."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:  # Keras raises bare Exceptions for network failures
        raise AlexnetError(
            "could not download CIFAR-10 with keras.datasets.cifar10.load_data() "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}). "
            "Offline? Use --data PATH with an image folder (train/<class>/*, test/<class>/*), "
            "a cifar-10-batches-py folder, or a .tar.gz of either."
        ) from error
    return Dataset(x_train, y_train.reshape(-1).astype(np.int64), x_test, y_test.reshape(-1).astype(np.int64),
                   list(CIFAR10_CLASSES), source="keras.datasets.cifar10")


# --- CIFAR batch files (pickles), read without running code ----------------------------


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers, bytes and numpy arrays only.

    A pickle can name any Python callable and have it run at load time; the
    CIFAR batches need none but numpy's array and dtype reconstructors, so
    every other global is refused before anything is called.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol 2 stores bytes
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"refused to load {module}.{name}: only plain data and numpy arrays are allowed")


def safe_unpickle(path):
    """Reads a pickle file that may hold only plain containers, bytes and numpy arrays.

    Raises:
        AlexnetError: If the file is truncated, corrupt or names anything else.
    """
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="bytes").load()
    except _RefusedGlobal as error:
        raise AlexnetError(f"{path}: {error}") from error
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as error:
        raise AlexnetError(f"{path}: truncated or corrupt pickle ({type(error).__name__}: {error})") from error


def _str_keys(obj, path):
    if not isinstance(obj, dict):
        raise AlexnetError(f"{path}: expected a dict in the CIFAR batch, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _find_cifar_batches(path):
    for folder in (path, path / "cifar-10-batches-py"):
        if (folder / "data_batch_1").is_file():
            return folder
    return None


def read_cifar_batch(path, num_classes=10):
    """Reads one CIFAR-10 batch file into uint8 images (N, 32, 32, 3) and int64 labels (N,)."""
    batch = _str_keys(safe_unpickle(path), path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels is None:
        raise AlexnetError(f"{path}: not a CIFAR-10 batch (expected 'data' of shape (N, 3072) and 'labels')")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(data):
        raise AlexnetError(f"{path}: {len(data)} images but {len(labels)} labels")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise AlexnetError(f"{path}: labels out of range 0..{num_classes - 1}: {sorted(set(bad.tolist()))[:5]}")
    images = data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), labels


def read_cifar_batches(folder):
    """Reads the official `cifar-10-batches-py` folder (data_batch_1..5, test_batch, batches.meta)."""
    folder = Path(folder)
    class_names = list(CIFAR10_CLASSES)
    if (folder / "batches.meta").is_file():
        meta = _str_keys(safe_unpickle(folder / "batches.meta"), folder / "batches.meta")
        names = meta.get("label_names")
        if names:
            class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    train_files = sorted(folder.glob("data_batch_*"), key=lambda p: p.name)
    if not (folder / "test_batch").is_file():
        raise UsageError(f"--data: {folder} has data_batch_* files but no test_batch")
    parts = [read_cifar_batch(p, len(class_names)) for p in train_files]
    x_test, y_test = read_cifar_batch(folder / "test_batch", len(class_names))
    return Dataset(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                   x_test, y_test, class_names, source=str(folder))


# --- Image folders ---------------------------------------------------------------------


def _list_images(root, part):
    """Returns {class name: [image paths]} for root/part/<class>/*, checking the layout."""
    folder = root / part
    if not folder.is_dir():
        raise UsageError(f"--data: {root} has no {part}/ folder. An image folder holds "
                         "train/<class>/* and test/<class>/*.")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"--data: {folder} holds no class folders (expected {part}/<class>/*)")
    files = {}
    for name in classes:
        files[name] = sorted(p for p in (folder / name).iterdir()
                             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files[name]:
            raise UsageError(f"--data: class folder {folder / name} holds no image files "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _to_rgb(image):
    """Converts any PIL mode to RGB; transparent pixels are composited on white."""
    from PIL import Image

    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def decode_image(path, size=None):
    """Decodes one image file to uint8 RGB (H, W, 3), resized (bilinear) to size=(height, width) if given."""
    from PIL import Image

    with Image.open(path) as image:
        image = _to_rgb(image)
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _image_size(path):
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]  # (height, width)
    except Exception:  # unreadable files are reported when decoded
        return None


def _progress(total, label):
    import keras

    print(label)
    return keras.utils.Progbar(total, unit_name="image")


def _parallel_map(function, items, label):
    """Maps over items on a thread pool (PIL releases the GIL while decoding), with a progress bar."""
    results = [None] * len(items)
    bar = _progress(len(items), label) if len(items) >= 2000 else None
    workers = min(32, (os.cpu_count() or 1) * 2)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for done, (i, result) in enumerate(pool.map(lambda ix: (ix[0], function(ix[1])), enumerate(items)), 1):
            results[i] = result
            if bar is not None and (done % max(1, len(items) // 50) == 0 or done == len(items)):
                bar.update(done)
    return results


def _folder_key(files, storage_size):
    digest = hashlib.sha256(f"v{_CACHE_FORMAT} size={storage_size or 'auto'}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"\n{path}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def load_image_folder(root, storage_size=None, strict=False):
    """Loads an image-folder dataset (train/<class>/*, test/<class>/*) into uint8 arrays.

    Every image becomes RGB (grayscale replicated, transparency composited on
    white) and is resized to one storage size: `storage_size`, or else the most
    common size in the folder. Decoded arrays are cached (see `cache_dir`).

    Raises:
        UsageError: If the layout is wrong (no train/ or test/, empty class
            folders, differing class lists, a single class).
        AlexnetError: With strict=True, if a file cannot be decoded.
    """
    root = Path(root)
    train_files, test_files = _list_images(root, "train"), _list_images(root, "test")
    if sorted(train_files) != sorted(test_files):
        only_train = sorted(set(train_files) - set(test_files))
        only_test = sorted(set(test_files) - set(train_files))
        raise UsageError(f"--data: train/ and test/ of {root} have different classes "
                         f"(only in train: {only_train or 'none'}; only in test: {only_test or 'none'})")
    class_names = sorted(train_files)
    if len(class_names) < 2:
        raise UsageError(f"--data: {root} holds a single class ({class_names[0]}); classification needs two or more")
    paths, labels, parts = [], [], []
    for part, files in (("train", train_files), ("test", test_files)):
        for label, name in enumerate(class_names):
            paths += files[name]
            labels += [label] * len(files[name])
            parts += [part] * len(files[name])

    # The key uses the size as asked ("auto" for None), so a cached folder loads without reading any image.
    cached = cache_dir() / f"folder-{_folder_key(paths, storage_size)}"
    if (cached / "meta.json").is_file():
        meta = json.loads((cached / "meta.json").read_text())
        _report_skipped(meta["skipped"], strict)
        return Dataset(*(np.load(cached / f"{name}.npy") for name in ("x_train", "y_train", "x_test", "y_test")),
                       class_names=meta["class_names"], source=str(root), skipped=meta["skipped"])

    size = storage_size
    if size is None:
        sizes = [s for s in _parallel_map(_image_size, paths, f"Reading image sizes in {root}") if s is not None]
        if not sizes:
            raise AlexnetError(f"--data: none of the {len(paths)} files in {root} is a readable image")
        size = collections.Counter(sizes).most_common(1)[0][0]
    size = tuple(int(s) for s in size)

    def decode(path):
        try:
            return decode_image(path, size)
        except Exception as error:  # PIL raises many types for bad files
            return f"{path}: {type(error).__name__}: {error}"

    images = _parallel_map(decode, paths, f"Decoding {len(paths)} images in {root} (cached for next time)")
    skipped = [r for r in images if isinstance(r, str)]
    _report_skipped(skipped, strict)
    keep = [not isinstance(r, str) for r in images]
    arrays = {}
    for part in ("train", "test"):
        chosen = [i for i, (p, k) in enumerate(zip(parts, keep)) if p == part and k]
        if not chosen:
            raise AlexnetError(f"--data: no readable images left in {root / part}")
        arrays[f"x_{part}"] = np.stack([images[i] for i in chosen])
        arrays[f"y_{part}"] = np.asarray([labels[i] for i in chosen], dtype=np.int64)
    _write_cache(cached, arrays, {"class_names": class_names, "skipped": skipped, "root": str(root)})
    return Dataset(**arrays, class_names=class_names, source=str(root), skipped=skipped)


def _report_skipped(skipped, strict):
    """Warns about unreadable files, or fails with strict=True."""
    if not skipped:
        return
    head = f"{len(skipped)} file(s) could not be read as images"
    listing = "; ".join(skipped[:10]) + (f"; and {len(skipped) - 10} more" if len(skipped) > 10 else "")
    if strict:
        raise AlexnetError(f"--data: {head} (--strict): {listing}")
    print(f"warning: {head} and were skipped: {listing}", file=sys.stderr)


def _write_cache(folder, arrays, meta):
    """Writes the cache folder under a temporary name and renames it, so a crash leaves no half cache."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        (tmp / "meta.json").write_text(json.dumps(meta))  # written last: marks the folder complete
        if folder.exists():  # another process cached the same folder meanwhile
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"warning: could not cache decoded images in {folder.parent} ({error})", file=sys.stderr)


def _resized(dataset, size):
    """Returns the dataset with every image resized (bilinear) to size=(height, width)."""
    from PIL import Image

    def resize(images):
        return np.stack([np.asarray(Image.fromarray(im).resize((size[1], size[0]), Image.BILINEAR)) for im in images])

    return dataclasses.replace(dataset, x_train=resize(dataset.x_train), x_test=resize(dataset.x_test))


# --- Archives ----------------------------------------------------------------------------


def extract_archive(path):
    """Extracts a .tar.gz/.tgz/.tar/.zip archive once into the cache and returns the folder.

    Extraction goes to a temporary folder that is renamed when complete, and
    tar members that would land outside it (absolute paths, '..', links) are
    refused by tarfile's "data" filter.
    """
    path = Path(path)
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    target = cache_dir() / f"archive-{key}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    print(f"Extracting {path} into {target} (once)", file=sys.stderr)
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise AlexnetError(f"{path}: refusing archive member outside the folder: {member}")
                archive.extractall(tmp)
        else:
            with tarfile.open(path) as archive:
                if hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+
                    archive.extractall(tmp, filter="data")
                else:  # older Pythons: refuse what the "data" filter would refuse, then extract
                    for member in archive.getmembers():
                        if (member.name.startswith("/") or ".." in Path(member.name).parts
                                or member.issym() or member.islnk() or member.isdev()):
                            raise AlexnetError(f"{path}: refusing archive member {member.name}")
                    archive.extractall(tmp)
        os.replace(tmp, target)
    except AlexnetError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise AlexnetError(f"{path}: cannot extract archive ({type(error).__name__}: {error})") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _dataset_root(folder):
    """Descends through single-folder wrappers (cifar10-jpeg/train/... -> cifar10-jpeg)."""
    while True:
        if (folder / "train").is_dir() or _find_cifar_batches(folder) is not None:
            return folder
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        folder = entries[0]

