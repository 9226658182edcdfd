"""The registry: every setting's allowed values, and the rules its numbers follow, each stated once.

argparse (`choices`, help), `TrainConfig.validate` and the code that uses a
value all read these. Keras-free: the CLI reads them before the backend is chosen.

- models: `architecture.VARIANTS` (the builders' names), recipes: `recipes.RECIPES`,
  re-exported here as MODELS and RECIPES;
- backends, strategies and export formats: listed here.
"""

import dataclasses
import math
import os

from alexnet.errors import UsageError, check_choice
from alexnet.model.architecture import VARIANTS, feature_map_size, min_image_size
from alexnet.settings.recipes import RECIPES

MODELS = tuple(VARIANTS)
DEFAULT_MODEL = "alexnet"
FREEZE = ("none", "features")  # --freeze: what of a model started from trained weights stays as it came
RECIPE_NAMES = tuple(RECIPES)
BACKENDS = ("tensorflow", "jax", "torch")

# --strategy -> the backends it runs on (None: any). multiworker runs nowhere: Keras 3's fit cannot train under
# tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585); it is listed so that the refusal can
# say why and what to use instead (distribute.py).
STRATEGIES = {"auto": None, "none": None, "mirrored": ("tensorflow",), "data-parallel": ("jax",), "multiworker": ()}


def strategies_on(backend):
    """The strategies that run on `backend`, in registry order."""
    return [name for name, backends in STRATEGIES.items() if backends is None or backend in backends]


@dataclasses.dataclass(frozen=True)
class Format:
    """An export format: how Keras writes it, and what serves it."""

    keras_format: str  # the `format` of keras.Model.export
    suffix: str  # of the artifact ("" for a folder)
    runtime: str  # the distribution that loads it where it is deployed
    runtime_module: str  # the module it is imported as
    converters: tuple = ()  # modules the export itself needs, beside Keras's backend
    backends: tuple = ("tensorflow",)  # Keras backends that export it with what the export extra installs


# Measured with Keras 3.15.1 (README, "Deploy a model"). Elsewhere Keras fails: JAX to ONNX needs jax2onnx and
# JAX to LiteRT is not supported; PyTorch to SavedModel fails in torch.export, to LiteRT needs litert-torch.
FORMATS = {
    "savedmodel": Format("tf_saved_model", "", "tensorflow", "tensorflow", backends=("tensorflow", "jax")),
    "onnx": Format("onnx", ".onnx", "onnxruntime", "onnxruntime", converters=("tf2onnx", "onnx"),
                   backends=("tensorflow", "torch")),
    "tflite": Format("litert", ".tflite", "ai-edge-litert", "ai_edge_litert"),
}

# Settings that must be positive where given (TrainConfig field -> its flag); argparse and validate read it.
POSITIVE = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "limit_train": "--limit-train",
            "limit_test": "--limit-test"}


# The environment variables that tune the package (beside ALEXNET_CACHE_DIR, a folder), each read here only; the
# CLI checks them as it starts, so a bad value fails at once whatever the command then reads.
MEMORY_BUDGET = "ALEXNET_MEMORY_BUDGET"  # bytes (suffix K, M or G allowed) that decoded images may fill
STREAM_WORKERS = "ALEXNET_STREAM_WORKERS"  # Grain's decoding processes; 0 decodes in the main process


def memory_budget_setting():
    """$ALEXNET_MEMORY_BUDGET in bytes, or None where it is not set; UsageError for anything but a positive size."""
    given = os.environ.get(MEMORY_BUDGET, "").strip()
    if not given:
        return None
    scale = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30}.get(given[-1].upper(), 1)
    try:
        value = float(given[:-1] if scale > 1 else given) * scale
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise UsageError(f"{MEMORY_BUDGET} must be a positive number of bytes, with K, M or G allowed (for example "
                         f"512M or 8G). Received: {MEMORY_BUDGET}={given}")
    return int(value)


def stream_workers_setting():
    """$ALEXNET_STREAM_WORKERS, or None where it is not set; UsageError for anything but a whole number >= 0."""
    given = os.environ.get(STREAM_WORKERS, "").strip()
    if not given:
        return None
    if not given.isdigit():
        raise UsageError(f"{STREAM_WORKERS} must be a whole number of decoding processes, 0 or more (0 decodes in "
                         f"the main process). Received: {STREAM_WORKERS}={given}")
    return int(given)


def check_environment():
    """Raises UsageError for an environment variable of the package with a value it cannot use."""
    memory_budget_setting()
    stream_workers_setting()


def check(flag, value, allowed):
    """`value` if it is one of `allowed`, else UsageError naming the flag, the allowed values and the value."""
    return check_choice(flag, value, allowed)


def check_positive(flag, value):
    """Raises UsageError unless value is None or a finite number above 0."""
    if value is not None and not 0 < value < float("inf"):
        kind = "integer" if isinstance(value, int) else "number"
        raise UsageError(f"{flag} must be a positive {kind}. Received: {value}")
    return value


def check_image_size(image_size, name="--image-size", model=DEFAULT_MODEL):
    """Raises UsageError if the model's feature maps vanish at `image_size` (below 67; 63 for torchvision's)."""
    if feature_map_size(image_size, model) < 1:
        raise UsageError(f"{name} {image_size} is too small for {model}: the smallest that works is "
                         f"{min_image_size(model)}. Received: {name.strip('`')}={image_size}")
    return image_size
