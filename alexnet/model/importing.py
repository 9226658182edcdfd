"""`alexnet import-weights`: a torchvision AlexNet state dict (.pth) -> an `alexnet-torchvision` .keras model.

torchvision's layouts differ from Keras's in three places, each converted here:
convolution kernels are (out, in, height, width) where Keras wants (height,
width, in, out); dense weights are (out, in) where Keras wants (in, out); and
fc6 reads the last feature map flattened channel-first (C, H, W) where Keras
flattens (H, W, C), so its input rows are permuted. The file is read with
`torch.load(weights_only=True)`: a pickle that would run code is refused.
"""

import logging
import re
from importlib import resources
from pathlib import Path

import keras
import numpy as np

from alexnet.errors import AlexnetError, UsageError
from alexnet.files import save_model_atomic, sha256_of
from alexnet.model.architecture import TORCHVISION_CONVS, VARIANTS
from alexnet.model.builders import build_model

_POOLED = VARIANTS["alexnet-torchvision"].pooled
TORCHVISION_FILE = "alexnet-owt-7be5be79.pth"  # IMAGENET1K_V1, from download.pytorch.org/models/
log = logging.getLogger(__name__)


def _expected(classes):
    """torchvision's state-dict keys (without .weight/.bias) -> (our layer, the weight's shape)."""
    convs, channels = {}, 3
    for index, (key, conv) in enumerate(zip((0, 3, 6, 8, 10), TORCHVISION_CONVS), start=1):
        convs[f"features.{key}"] = (f"conv{index}", (conv.filters, channels, conv.kernel, conv.kernel))
        channels = conv.filters
    return {**convs, "classifier.1": ("fc1", (4096, channels * _POOLED * _POOLED)),
            "classifier.4": ("fc2", (4096, 4096)), "classifier.6": ("predictions", (classes, 4096))}


def imagenet_class_names():
    """The 1000 ImageNet class names in torchvision's order (its `_IMAGENET_CATEGORIES`), shipped as data."""
    text = resources.files("alexnet.model").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def read_state_dict(path):
    """The tensors of a torchvision AlexNet file as float32 NumPy arrays, by key; refused unless they are exactly
    torchvision's AlexNet (any number of classes). Accepts a bare state dict, a torchvision reference
    checkpoint ({"model": ...}) and DataParallel's "module." prefix."""
    try:
        import torch
    except ImportError:
        raise UsageError('import-weights reads .pth files with PyTorch, which is not installed: pip install -e '
                         '".[torch]" (torchvision is not needed)') from None
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler refuses code as UnpicklingError; a damaged file raises others
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AlexnetError(f"{path} was refused: it is not a file of tensors that torch.load(weights_only=True) "
                           f"reads (a file holding code is refused, never run): {first}") from None
    if isinstance(loaded, dict):  # a reference-script checkpoint {"model": ...} or {"state_dict": ...}
        loaded = next((loaded[key] for key in ("model", "state_dict") if isinstance(loaded.get(key), dict)), loaded)
    if not isinstance(loaded, dict) or not all(hasattr(v, "shape") for v in loaded.values()):
        raise AlexnetError(f"{path} holds a {type(loaded).__name__}, not a state dict of tensors")
    tensors = {re.sub(r"^module\.", "", key): value for key, value in loaded.items()}
    classes = int(tensors["classifier.6.weight"].shape[0]) if "classifier.6.weight" in tensors else 1000
    expected = {f"{key}.{part}": shape if part == "weight" else shape[:1]
                for key, (_, shape) in _expected(classes).items() for part in ("weight", "bias")}
    if set(tensors) != set(expected) or classes < 2:
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise AlexnetError(f"{path} is not a torchvision AlexNet state dict: "
                           + "; ".join(part for part in (f"missing {missing}" * bool(missing),
                                                         f"unexpected {extra[:8]}" * bool(extra),
                                                         f"{classes} output class" * (classes < 2)) if part))
    wrong = [f"{key} {tuple(tensors[key].shape)} (expected {shape})" for key, shape in expected.items()
             if tuple(tensors[key].shape) != tuple(shape)]
    if wrong:
        raise AlexnetError(f"{path} is not a torchvision AlexNet state dict: wrong shapes: {'; '.join(wrong)}")
    return {key: value.detach().to(torch.float32).numpy() for key, value in tensors.items()}


def keras_weights(tensors):
    """{our layer name: [kernel, bias]} in Keras's layouts, from `read_state_dict`'s tensors."""
    classes = tensors["classifier.6.weight"].shape[0]
    converted = {}
    for key, (layer, _) in _expected(classes).items():
        weight, bias = tensors[f"{key}.weight"], tensors[f"{key}.bias"]
        if weight.ndim == 4:  # (O, I, H, W) -> (H, W, I, O)
            kernel = weight.transpose(2, 3, 1, 0)
        elif layer == "fc1":  # its inputs: (C, H, W)-flattened in torch, (H, W, C)-flattened in Keras
            channels = TORCHVISION_CONVS[-1].filters
            kernel = weight.reshape(-1, channels, _POOLED, _POOLED).transpose(0, 2, 3, 1).reshape(
                weight.shape[0], -1).T
        else:  # (O, I) -> (I, O)
            kernel = weight.T
        converted[layer] = [np.ascontiguousarray(kernel), bias]
    return converted


def _class_names(names_file, classes):
    if names_file is None:
        return imagenet_class_names() if classes == 1000 else [str(i) for i in range(classes)]
    try:
        names = [line.strip() for line in Path(names_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--class-names {names_file}: cannot read it ({type(error).__name__}: {error})") from None
    if len(names) != classes:
        raise UsageError(f"--class-names {names_file} names {len(names)} classes; the weights have {classes}")
    return names


def _check_hash(path, digest):
    """torch.hub's rule: a file named like name-<first hex digits of its sha256>.pth should match them. For
    torchvision's own file (alexnet-owt-7be5be79.pth) a mismatch is refused; for other names, which may end in a
    date or a number, it is a warning."""
    match = re.search(r"-([0-9a-f]{8,})\.pth?$", Path(path).name)
    if not match or digest.startswith(match.group(1)):
        return
    said = (f"{path}: its sha256 ({digest[:12]}...) does not start with {match.group(1)}, as a torch.hub file "
            "name says it should")
    if Path(path).name == TORCHVISION_FILE:
        raise AlexnetError(f"{said}: the file is damaged or incomplete. Download it again")
    log.warning(f"{said}; if the name is torch.hub's, the file is damaged or incomplete")


def import_weights(weights, out, class_names=None, overwrite=False):
    """Converts a torchvision AlexNet state dict into an `alexnet-torchvision` .keras model (float32).

    Args:
        weights: the .pth file (e.g. alexnet-owt-7be5be79.pth, torchvision's IMAGENET1K_V1).
        out: the .keras file to write.
        class_names: a text file with one class name per line; None: ImageNet's names for 1000 classes, else
            "0", "1", ...
        overwrite: replace `out` if it exists.

    Returns:
        {"path", "classes", "names", "parameters", "sha256"}: what was written.

    Raises:
        UsageError: For a missing file, a bad --out or --class-names, or PyTorch not installed.
        AlexnetError: For a file refused by torch.load(weights_only=True), or not torchvision's AlexNet.
    """
    out = Path(out)
    if out.suffix != ".keras":
        raise UsageError(f"--out {out}: a Keras model file must end in .keras")
    if out.exists() and not overwrite:
        raise UsageError(f"--out {out} exists; give --overwrite to replace it")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    tensors = read_state_dict(weights)
    digest = sha256_of(weights)
    _check_hash(weights, digest)
    classes = tensors["classifier.6.weight"].shape[0]
    names = _class_names(class_names, classes)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # whatever training would pick here (bfloat16 on AMX CPUs)
    try:
        model = build_model("alexnet-torchvision", input_shape=(224, 224, 3), num_classes=classes,
                            card={"class_names": names, "crop": "center"})
    finally:
        keras.config.set_dtype_policy(policy)
    for layer, values in keras_weights(tensors).items():
        model.get_layer(layer).set_weights(values)
    save_model_atomic(model, out)
    described = ("ImageNet's names" if class_names is None and classes == 1000 else
                 f"numbered 0 to {classes - 1}" if class_names is None else f"names from {class_names}")
    return {"path": str(out), "classes": int(classes), "names": described,
            "parameters": int(model.count_params()), "sha256": digest}
