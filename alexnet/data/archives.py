"""Archives of a dataset (tar, plain or compressed, and zip): extracted once into the cache, safely."""

import atexit
import logging
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from alexnet import console
from alexnet.data.cache import _archive_key, _rename_unless_present, writable_cache_dir
from alexnet.data.cifar_batches import _find_cifar_batches
from alexnet.errors import AlexnetError

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".zip")


def extract_archive(path):
    """Extracts a tar (plain, gzip, xz, bzip2) or zip archive once into the cache and returns the folder.

    Extraction goes to a temporary folder that is renamed when complete, and
    tar members that would land outside it (absolute paths, '..', links) are
    refused by tarfile's "data" filter.
    """
    path = Path(path)
    key = _archive_key(path)
    cache = writable_cache_dir()
    if cache is None:  # no writable cache: extract into a temporary folder removed at exit
        cache = Path(tempfile.mkdtemp(prefix="alexnet-extract-"))
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    target = cache / f"archive-{key}"
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    console.note(log, f"Extracting {path} ...")
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
    console.note(log, f"Extracted into {target}; later runs reuse it")
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
