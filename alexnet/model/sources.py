"""A trained model to start from (`--init-from`), described without Keras: its architecture, input and classes.

A `.keras` file is a zip archive whose config.json describes the model; this
module reads that, so that the settings of a fine-tuning run (its model and
image size) resolve before the backend is chosen.
"""

import dataclasses
import functools
import json
import zipfile
from pathlib import Path
from typing import Optional

from alexnet.errors import UsageError
from alexnet.files import sha256_of
from alexnet.model.architecture import VARIANTS
from alexnet.runs import RunFolder


@dataclasses.dataclass(frozen=True)
class Source:
    """A trained model that a run starts from."""

    given: str  # as the user named it: a run folder or a .keras file
    path: Path  # the .keras file
    model: str  # its architecture: a key of architecture.VARIANTS
    image_size: int  # the side of the images its convolutions see
    classes: int
    class_names: Optional[list]  # its ModelCard's, or its run's; None where neither says

    def sha256(self):
        """The model file's sha256 (hex)."""
        return sha256_of(self.path)


def model_file(given):
    """The .keras file that `given` (a run folder or a .keras file) names; UsageError where there is none."""
    path = Path(given)
    if path.is_dir():
        folder = RunFolder(path)
        if not folder.is_run():
            raise UsageError(f"--init-from {given}: not a run folder (no {RunFolder.CONFIG}) and not a .keras file")
        return folder.model_file()
    if not path.is_file():
        raise UsageError(f"--init-from {given}: no such run folder or model file")
    return path


def describe(given):
    """The `Source` that `given` names (read once per file version).

    Raises:
        UsageError: For a path that is not a run or a .keras file, or a model of another architecture.
    """
    path = model_file(given)
    stat = path.stat()
    return _describe(str(given), str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _describe(given, path, size, mtime):  # size and mtime: a file replaced in place is read again
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise UsageError(f"--init-from {given}: {path} is not a Keras model file (.keras) that loads "
                         f"({type(error).__name__}: {error})") from None
    name = str(config.get("config", {}).get("name", "")).replace("_", "-")
    if name not in VARIANTS:
        raise UsageError(f"--init-from {given}: {path} holds a model named {name or 'without a name'!r}, not one of "
                         f"this project's architectures ({', '.join(VARIANTS)}); convert torchvision's weights with "
                         "alexnet import-weights")
    layers = {layer.get("config", {}).get("name"): layer.get("config", {})
              for layer in config["config"].get("layers", [])}
    names = layers.get("model_card", {}).get("class_names")
    home = next((RunFolder(p) for p in Path(path).parents[:2] if RunFolder(p).is_run()), None)  # beside, checkpoints/
    if not names and home is not None:
        names = home.read_config("read for its class names").get("data", {}).get("class_names")
    classes = int(layers["predictions"]["units"])
    return Source(given, Path(path), name, int(layers["resize"]["height"]), classes,
                  list(names) if names and len(names) == classes else None)
