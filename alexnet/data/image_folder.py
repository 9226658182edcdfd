"""Image folders (train/<class>/*, test/<class>/*, and ImageNet's layouts: `layouts`): decoded once to uint8
arrays, then read from the cache, or indexed to stream from disk."""

import collections
import concurrent.futures
import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from alexnet import console
from alexnet.data.cache import _folder_key, _read_cache, _write_cache, writable_cache_dir
from alexnet.data.dataset import Dataset
from alexnet.data.images import _image_size, decode_image
from alexnet.data.index import FileIndex, index_key, load_index, save_index
from alexnet.data.layouts import detect, list_files
from alexnet.errors import AlexnetError, UsageError
from alexnet.settings.choices import memory_budget_setting

log = logging.getLogger(__name__)

MAX_STORED_SIDE = 256  # default cap on the longer side of stored images (pixels): photos would fill memory


def load_image_folder(root, storage_size=None, strict=False, test_only=False, stream=None):
    """Loads an image-folder dataset into uint8 arrays, or indexes it to stream.

    The layout (train/<class>/* with test/<class>/* or val/<class>/*, or one of
    ImageNet's) is detected by `layouts.detect`; labels follow the sorted class
    folder names (wnids), and ImageNet's synset mapping names the classes.

    Every image becomes RGB (grayscale replicated, transparency composited on
    white) and is resized to one storage size: `storage_size`, or else the most
    common size in the folder. Decoded arrays are cached (see `cache_dir`).

    A folder whose decoded images would not fit in memory (`fits_in_memory`) is
    not decoded: its files are indexed (`data.index.FileIndex`, cached) and
    streamed from disk during training. stream=True or False forces either.

    Raises:
        UsageError: If the layout is wrong (no train/ or test/, empty class
            folders, differing class lists, a single class, an ImageNet folder
            that lacks a part or its labels), or stream=False for
            a folder that does not fit in memory.
        AlexnetError: With strict=True, if a file cannot be decoded.
    """
    layout = detect(root, test_only)
    root = layout.root  # the files' paths are relative to it (ILSVRC/Data/CLS-LOC for Kaggle's ImageNet)
    listing = index_key(layout, storage_size)  # of the cached index, without listing the files
    if stream is not False:
        streamed = _cached_index(root, listing, stream)
        if streamed is not None:
            return streamed
    files = list_files(layout, test_only)
    class_ids, class_names, paths, labels, parts = files
    # The key uses the size as asked ("auto" for None), so a cached folder loads without reading any image.
    key = _folder_key(paths, storage_size)
    cached = _cache_folder(key)
    if stream is not True:  # decoded before: it fit then
        dataset = _look_up_cache(cached, key, class_names, root)
        if dataset is not None:
            _report_skipped(dataset.skipped, strict)
            return dataclasses.replace(dataset, class_ids=class_ids)
    if stream is None:
        size = _storage_size(_sample(paths), storage_size, root, quiet=True)
        stream = not fits_in_memory(len(paths), size)
        if stream:
            console.note(log, f"{len(paths)} images of {root} at {size[0]}x{size[1]} would not fit in memory "
                              f"({_bytes(2 * _stored_bytes(len(paths), size))} while decoding, "
                              f"{_bytes(memory_budget())} available): streaming them from disk (--no-stream "
                              "refuses instead)")
    if stream:
        return _index_folder(root, listing, files, storage_size)
    size = _storage_size(paths, storage_size, root)
    _check_memory(len(paths), size, root)
    images = _decode_all(paths, size, root)
    skipped = [r for r in images if isinstance(r, str)]
    _report_skipped(skipped, strict)
    arrays = _assemble(images, labels, parts, size, root, test_only)
    if cached is not None:
        _write_cache(cached, arrays, {"key": key, "class_names": class_names, "skipped": skipped, "root": str(root)})
    return Dataset(**arrays, class_names=class_names, source=str(root), skipped=skipped, class_ids=class_ids)


# --- The steps of load_image_folder, in order ------------------------------------------


def _cache_folder(key):
    """Where the decoded folder with this key is cached; None without a writable cache."""
    cache = writable_cache_dir()
    return cache / f"folder-{key}" if cache is not None else None


def _look_up_cache(cached, key, class_names, root):
    """The dataset from its cache folder; None if there is none, or it was damaged (then removed)."""
    if cached is None or not cached.is_dir():
        return None
    return _read_cache(cached, key, class_names, root)


def _storage_size(paths, storage_size, root, quiet=False):
    """(height, width) to store images at: as asked, else the most common size, capped at MAX_STORED_SIDE."""
    if storage_size is not None:
        return tuple(int(s) for s in storage_size)
    sizes = [s for s in _parallel_map(_image_size, paths, f"Reading image sizes in {root}") if s is not None]
    if not sizes:
        raise AlexnetError(f"--data: none of the {len(paths)} files in {root} is a readable image")
    size = tuple(int(s) for s in collections.Counter(sizes).most_common(1)[0][0])
    if max(size) > MAX_STORED_SIDE:  # photos: keep memory bounded
        scale = MAX_STORED_SIDE / max(size)
        capped = tuple(max(1, round(side * scale)) for side in size)
        if not quiet:
            console.note(log, f"the most common image size in {root} is {size[0]}x{size[1]}; storing images at "
                              f"{capped[0]}x{capped[1]} (longer side {MAX_STORED_SIDE}; --storage-size sets another)")
        size = capped
    return size


def memory_budget():
    """Bytes the decoded images may take: $ALEXNET_MEMORY_BUDGET, else the memory available now (Linux)."""
    given = memory_budget_setting()
    return given if given is not None else _available_memory()


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


def _stored_bytes(count, size):
    return count * size[0] * size[1] * 3


def _bytes(count):
    return f"{count / 2 ** 30:.1f} GB" if count is not None else "unknown"


def fits_in_memory(count, size):
    """Whether `count` images stored at size fit: decoding holds each twice (a list, then the stacked array)."""
    budget = memory_budget()
    return budget is None or 2 * _stored_bytes(count, size) <= budget


def _check_memory(count, size, root):
    """Says how much memory the stored images take; refuses, with advice, when that is more than is free.

    Decoding holds each image once in a list and once in the stacked array, so the peak is about twice this.
    """
    needed = _stored_bytes(count, size)
    if needed >= 256 * 2 ** 20:
        console.note(log, f"{count} images at {size[0]}x{size[1]} take {needed / 2 ** 30:.1f} GB in memory")
    if not fits_in_memory(count, size):
        raise UsageError(f"--data: storing {count} images of {root} at {size[0]}x{size[1]} needs about "
                         f"{_bytes(2 * needed)} while decoding, more than the {_bytes(memory_budget())} "
                         "available; stream it from disk (--stream), give a smaller --storage-size (AlexNet "
                         "resizes to --image-size anyway) or fewer images")


# --- Streaming: an index of the files instead of their pixels --------------------------------


def _sample(paths, count=1000):
    """A seeded sample of the files, to estimate the most common size without reading every header."""
    if len(paths) <= count:
        return paths
    return [paths[i] for i in sorted(np.random.default_rng(0).choice(len(paths), count, replace=False))]


def _index_folder(root, key, files, storage_size):
    """The streamed dataset: FileIndex of the train and test files (a `layouts.Listing`; cached), never decoded."""
    class_ids, class_names, paths, labels, parts = files
    size = _storage_size(_sample(paths), storage_size, root)
    relative = np.array([os.fsencode(str(p.relative_to(root))) for p in paths])
    arrays = {"paths": relative, "labels": np.asarray(labels, np.int64),
              "test": np.asarray([part == "test" for part in parts])}
    save_index(key, arrays, {"class_names": class_names, "class_ids": class_ids, "size": list(size),
                             "root": str(root)})
    return _streamed_dataset(root, arrays, class_ids, class_names, size)


def _cached_index(root, key, stream):
    """The streamed dataset from a cached index: when streaming is forced, or the folder would not fit."""
    found = load_index(key, ("paths", "labels", "test"))
    if found is None:
        return None
    arrays, meta = found
    size = tuple(meta["size"])
    if stream is None and fits_in_memory(len(arrays["paths"]), size):
        return None  # it fits (now): decode it
    if stream is None:
        console.note(log, f"{len(arrays['paths'])} images of {root} would not fit in memory: streaming them "
                          "from disk (--no-stream refuses instead)")
    return _streamed_dataset(root, arrays, meta.get("class_ids", meta["class_names"]), meta["class_names"], size)


def _streamed_dataset(root, arrays, class_ids, class_names, size):
    index = FileIndex(Path(root), arrays["paths"], tuple(size))
    test = arrays["test"]
    dataset = Dataset(index[~test], arrays["labels"][~test], index[test], arrays["labels"][test], list(class_names),
                      source=str(root), class_ids=list(class_ids))
    log.info(f"Streaming {len(index)} images of {root} from disk; the index takes "
             f"{(index.nbytes + arrays['labels'].nbytes) / max(1, len(index)):.0f} bytes an image")
    return dataset


def _decode_all(paths, size, root):
    """Each file decoded at size: a uint8 (H, W, 3) array, or for an unreadable file a line that says why."""

    def decode(path):
        try:
            return decode_image(path, size)
        except Exception as error:  # PIL raises many types for bad files
            return f"{path}: {type(error).__name__}: {error}"

    return _parallel_map(decode, paths, f"Decoding {len(paths)} images in {root} (cached for next time)")


def _report_skipped(skipped, strict):
    """Warns about unreadable files, or fails with strict=True."""
    if not skipped:
        return
    head = f"{len(skipped)} file(s) could not be read as images"
    listing = "; ".join(skipped[:10]) + (f"; and {len(skipped) - 10} more" if len(skipped) > 10 else "")
    if strict:
        raise AlexnetError(f"--data: {head} (--strict): {listing}")
    log.warning(f"{head} and were skipped: {listing}")


def _assemble(images, labels, parts, size, root, test_only):
    """The x_train, y_train, x_test and y_test arrays of the decoded images, the unreadable files left out."""
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
    return arrays


# --- Decoding many files at once --------------------------------------------------------


def _progress(total, label):
    """Logs label and returns a Keras progress bar over total images."""
    import keras

    log.info(label)
    # A bar on a terminal; into a file or a pipe, one line when done (the bar's redraws would fill logs);
    # none when quiet.
    return keras.utils.Progbar(total, unit_name="image", verbose=console.keras_verbosity())


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
