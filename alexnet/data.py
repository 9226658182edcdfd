"""Data sources: CIFAR-10 from Keras, image folders, CIFAR batch folders and archives.

Every source gives the same thing, a `Dataset` of in-memory uint8 arrays:
images (N, H, W, C) and int64 labels (N,) for the train and test parts, plus
the class names in label order. Decoding image files is slow, so decoded
folders are cached as `.npy` files keyed by the files' names, sizes and
modification times.
"""

import atexit
import collections
import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from alexnet.errors import AlexnetError, UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_STORED_SIDE = 256  # default cap on the longer side of stored images (pixels): photos would fill memory
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".zip")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CACHE_FORMAT = 2  # bump when the cached arrays or meta.json change meaning


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
    """Returns the folder for decoded datasets and extracted archives ($ALEXNET_CACHE_DIR or ~/.cache/alexnet).

    Raises:
        UsageError: If $ALEXNET_CACHE_DIR names something that is not a folder.
    """
    if os.environ.get("ALEXNET_CACHE_DIR"):
        folder = Path(os.environ["ALEXNET_CACHE_DIR"]).expanduser()
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"ALEXNET_CACHE_DIR={folder} is a file, not a folder; point it at a folder "
                             "(it is created if missing) or unset it to use ~/.cache/alexnet")
        return folder
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alexnet"


_warned_unwritable = set()


def writable_cache_dir():
    """The cache folder if it can be written (created if missing), else None after one warning."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-")
        probe.close()
        return folder
    except OSError as error:
        if str(folder) not in _warned_unwritable:
            _warned_unwritable.add(str(folder))
            print(f"warning: cannot write the cache folder {folder} ({type(error).__name__}: {error.strerror}); "
                  "working in memory and without a cache (set ALEXNET_CACHE_DIR to a writable folder to keep "
                  "decoded images between runs)", file=sys.stderr)
        return None


def load_dataset(data="cifar10", storage_size=None, strict=False, test_only=False):
    """Loads a dataset by the CLI's `--data` value.

    Args:
        data: "cifar10" (Keras's download), or the path of an image folder
            (`train/<class>/*`, `test/<class>/*`), of a `cifar-10-batches-py`
            folder, or of an archive of either (ARCHIVE_SUFFIXES).
        storage_size: (height, width) to store images at; None keeps the
            source's own size (for folders: the most common size in it).
        strict: Fail on unreadable image files instead of skipping them.
        test_only: Only the test part is needed (evaluation): an image folder
            may then lack train/, and its training arrays are empty.

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
            return load_image_folder(path, storage_size=storage_size, strict=strict, test_only=test_only)
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
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise AlexnetError(f"{path}: labels must be integers 0..{num_classes - 1}; found "
                           f"{type(labels[0]).__name__ if len(labels) else 'none'} values") from None
    if not np.issubdtype(data.dtype, np.integer) and not np.issubdtype(data.dtype, np.floating):
        raise AlexnetError(f"{path}: pixel data of type {data.dtype}; expected integers 0..255")
    if data.size and (data.min() < 0 or data.max() > 255 or
                      (np.issubdtype(data.dtype, np.floating) and not np.array_equal(data, np.rint(data)))):
        raise AlexnetError(f"{path}: pixel values must be whole numbers 0..255; found {data.min()}..{data.max()}")
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

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16/32-bit integer or float samples
        image = _scaled_to_8_bits(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def _scaled_to_8_bits(image):
    """A high-bit-depth grayscale image scaled to 8 bits ("L"), not clipped at 255.

    16-bit modes are scaled by 255/65535; 32-bit integers by their type's range
    when values exceed 16 bits; floats are taken as 0..1 (the TIFF convention)
    unless they exceed 1, then as 0..255.
    """
    from PIL import Image

    values = np.asarray(image)
    if image.mode == "F":
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("float image holds NaN or infinite values")
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
    elif image.mode == "I" and values.max(initial=0) > 65535:
        scale = 255.0 / (2 ** 31 - 1)
    else:  # I;16 variants, or 32-bit integers holding 16-bit data (PIL reads 16-bit PNGs as "I")
        scale = 255.0 / 65535
    if values.min(initial=0) < 0:
        raise ValueError(f"{image.mode} image holds negative values")
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), mode="L")


def decode_image(path, size=None):
    """Decodes one image file to uint8 RGB (H, W, 3), resized (bilinear) to size=(height, width) if given."""
    from PIL import Image

    with warnings.catch_warnings():  # a very large image: PIL warns (two lines); above twice its limit it raises
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)
    with image:
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

    print(label, flush=True)
    # A bar on a terminal; into a file or a pipe, one line when done (the bar's redraws would fill logs).
    return keras.utils.Progbar(total, unit_name="image", verbose=1 if sys.stdout.isatty() else 2)


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


def load_image_folder(root, storage_size=None, strict=False, test_only=False):
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
    test_files = _list_images(root, "test")
    if test_only and not (root / "train").is_dir():  # evaluation reads test/ alone
        train_files = {name: [] for name in test_files}
    else:
        train_files = _list_images(root, "train")
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
    key = _folder_key(paths, storage_size)
    cache = writable_cache_dir()
    cached = cache / f"folder-{key}" if cache is not None else None
    if cached is not None and cached.is_dir():
        dataset = _read_cache(cached, key, class_names, root)
        if dataset is not None:
            _report_skipped(dataset.skipped, strict)
            return dataset

    size = storage_size
    if size is None:
        sizes = [s for s in _parallel_map(_image_size, paths, f"Reading image sizes in {root}") if s is not None]
        if not sizes:
            raise AlexnetError(f"--data: none of the {len(paths)} files in {root} is a readable image")
        size = collections.Counter(sizes).most_common(1)[0][0]
    size = tuple(int(s) for s in size)
    if storage_size is None and max(size) > MAX_STORED_SIDE:  # photos: keep memory bounded
        scale = MAX_STORED_SIDE / max(size)
        capped = tuple(max(1, round(side * scale)) for side in size)
        print(f"note: the most common image size in {root} is {size[0]}x{size[1]}; storing images at "
              f"{capped[0]}x{capped[1]} (longer side {MAX_STORED_SIDE}; --storage-size sets another)",
              file=sys.stderr)
        size = capped
    _check_memory(len(paths), size, root)

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
        if not chosen and part == "train" and test_only:
            arrays["x_train"] = np.zeros((0, *size, 3), dtype=np.uint8)
            arrays["y_train"] = np.zeros((0,), dtype=np.int64)
            continue
        if not chosen:
            raise AlexnetError(f"--data: no readable images left in {root / part}")
        arrays[f"x_{part}"] = np.stack([images[i] for i in chosen])
        arrays[f"y_{part}"] = np.asarray([labels[i] for i in chosen], dtype=np.int64)
    if cached is not None:
        _write_cache(cached, arrays, {"key": key, "class_names": class_names, "skipped": skipped, "root": str(root)})
    return Dataset(**arrays, class_names=class_names, source=str(root), skipped=skipped)


_CACHED_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _available_memory():
    """Bytes of memory available now (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(count, size, root):
    """Says how much memory the stored images take; refuses, with advice, when that is more than is free.

    Decoding holds each image once in a list and once in the stacked array, so the peak is about twice this.
    """
    needed = count * size[0] * size[1] * 3
    if needed >= 256 * 2 ** 20:
        print(f"{count} images at {size[0]}x{size[1]} take {needed / 2 ** 30:.1f} GB in memory", file=sys.stderr)
    available = _available_memory()
    if available is not None and 2 * needed > available:
        raise UsageError(f"--data: storing {count} images of {root} at {size[0]}x{size[1]} needs about "
                         f"{2 * needed / 2 ** 30:.1f} GB while decoding, more than the {available / 2 ** 30:.1f} GB "
                         "available; give a smaller --storage-size (AlexNet resizes to --image-size anyway) "
                         "or fewer images")


def _read_cache(folder, key, class_names, root):
    """Reads a decoded-image cache folder, checking it against meta.json; None (after one line) if damaged.

    meta.json holds the key, the class names and each array's shape, dtype and
    SHA-256, so a truncated, edited or foreign file is caught, not trained on.
    A damaged folder is removed so that the next run does not meet it again.
    """
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("key") != key or meta.get("class_names") != class_names:
            raise ValueError("it belongs to other files")
        arrays = {}
        for name in _CACHED_ARRAYS:
            expected = meta["arrays"][name]
            data = (folder / f"{name}.npy").read_bytes()
            if hashlib.sha256(data).hexdigest() != expected["sha256"]:
                raise ValueError(f"{name}.npy does not match its checksum")
            array = np.load(io.BytesIO(data), allow_pickle=False)
            if list(array.shape) != expected["shape"] or str(array.dtype) != expected["dtype"]:
                raise ValueError(f"{name}.npy has shape {array.shape}, expected {expected['shape']}")
            arrays[name] = array
        if len(arrays["x_train"]) != len(arrays["y_train"]) or len(arrays["x_test"]) != len(arrays["y_test"]):
            raise ValueError("images and labels differ in number")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        print(f"warning: the decoded-image cache {folder} is damaged ({error}); decoding the images again",
              file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return Dataset(**arrays, class_names=meta["class_names"], source=str(root), skipped=meta.get("skipped", []))


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
    """Writes the cache folder under a temporary name and renames it, so a crash leaves no half cache.

    Two processes may decode the same folder at once: the first rename wins and
    the other's copy is dropped (both hold the same arrays).
    """
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
        meta = {**meta, "arrays": {}}
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            (tmp / f"{name}.npy").write_bytes(buffer.getvalue())
            meta["arrays"][name] = {"shape": list(array.shape), "dtype": str(array.dtype),
                                    "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()}
        (tmp / "meta.json").write_text(json.dumps(meta))
        _rename_unless_present(tmp, folder)
    except OSError as error:
        print(f"warning: could not cache decoded images in {folder.parent} ({error})", file=sys.stderr)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _rename_unless_present(tmp, target):
    """Renames the folder tmp to target; if another process put target in place first, keeps theirs."""
    try:
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():  # not a lost race: a real error
            raise


def _resized(dataset, size):
    """Returns the dataset with every image resized (bilinear) to size=(height, width)."""
    from PIL import Image

    def resize(images):
        return np.stack([np.asarray(Image.fromarray(im).resize((size[1], size[0]), Image.BILINEAR)) for im in images])

    return dataclasses.replace(dataset, x_train=resize(dataset.x_train), x_test=resize(dataset.x_test))


# --- Archives ----------------------------------------------------------------------------


def extract_archive(path):
    """Extracts a tar (plain, gzip, xz, bzip2) or zip archive once into the cache and returns the folder.

    Extraction goes to a temporary folder that is renamed when complete, and
    tar members that would land outside it (absolute paths, '..', links) are
    refused by tarfile's "data" filter.
    """
    path = Path(path)
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    cache = writable_cache_dir()
    if cache is None:  # no writable cache: extract into a temporary folder removed at exit
        cache = Path(tempfile.mkdtemp(prefix="alexnet-extract-"))
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    target = cache / f"archive-{key}"
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    print(f"Extracting {path} ...", file=sys.stderr, flush=True)
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
        _rename_unless_present(tmp, target)  # a concurrent extraction may have won: then its copy is used
    except AlexnetError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise AlexnetError(f"{path}: cannot extract archive ({type(error).__name__}: {error}); nothing was kept, "
                           "the next run tries again") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"Extracted into {target}; later runs reuse it", file=sys.stderr)
    return target


def _dataset_root(folder):
    """Descends through single-folder wrappers (cifar10-jpeg/train/... -> cifar10-jpeg)."""
    while True:
        if (folder / "train").is_dir() or (folder / "test").is_dir() or _find_cifar_batches(folder) is not None:
            return folder
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        folder = entries[0]

