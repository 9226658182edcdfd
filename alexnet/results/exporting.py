"""`alexnet export`: a trained model as SavedModel, ONNX or TFLite, proven equal by the runtime that serves it.

    alexnet export runs/20261128-0930-alexnet --format onnx
    -> runs/20261128-0930-alexnet/export/model.onnx, checked with onnxruntime on 256 test images

The artifact takes what the `.keras` model takes, uint8 images (B, H, W, 3) at
the stored size, and returns class probabilities (B, classes): standardization
and the resize are inside it, so a deployment needs no preprocessing code.

What is exported is a clean inference copy of the model, built by the same
builder and given the trained weights layer by layer: float32 whatever the
training's dtype policy (ONNX export refuses mixed precision, and serving
runtimes on CPUs want float32), without the augmentation layers, and with
dropout inactive (Keras traces the model for inference).

After writing, the artifact is loaded by the runtime a user deploys with
(`tf.saved_model.load`, `onnxruntime`, the LiteRT interpreter), run on test
images, and compared with the Keras model: the export fails (exit status 1)
if any probability differs by more than 1e-4. Top-1 agreement is reported; it
is 100% except between classes tied within that (never seen in our runs).
"""

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from alexnet import console
from alexnet.errors import AlexnetError, UsageError, check_choice
from alexnet.files import atomic_target
from alexnet.results.evaluation import test_split
from alexnet.results.loading import load_model, resolve_target
from alexnet.settings.choices import FORMATS, MODELS

log = logging.getLogger(__name__)

# The CLI imports this module before it chooses the Keras backend, so Keras (and the model builders) are
# imported only inside the functions that run after the choice.


CHECK_BATCH = 64  # images per call into a runtime
TOLERANCE = 1e-4  # the largest difference in any probability allowed between the artifact and Keras


def export(target, format="savedmodel", out=None, data=None, check_images=256, tolerance=TOLERANCE):
    """Exports a trained model and proves the artifact equal to it with the runtime that serves it.

    Args:
        target: a run folder (its model.keras) or a .keras file.
        format: "savedmodel", "onnx" or "tflite".
        out: where to write; default: `export/model.<suffix>` (`export/savedmodel/`) in the run
            folder, or beside a bare .keras file.
        data: a `--data` value whose test images the check uses; default: the run's own test split.
            A bare .keras file without `data` is checked on seeded random images.
        check_images: how many images the check runs.
        tolerance: the largest allowed difference in any probability.

    Returns:
        A dict: "path", "format", "bytes", "runtime" (name and version), "images", "agreement"
        (share of images whose top-1 class agrees), "disagreements", "ties" (disagreements between
        classes whose Keras probabilities are within twice `tolerance`, which are allowed),
        and "max_abs_diff" (the largest difference in any probability); for a model trained in
        mixed precision also "trained_dtype_policy" and "agreement_with_trained" (top-1 agreement of
        the float32 export with the model as trained).

    Raises:
        UsageError: For an unknown format, a missing export extra, or a model this package did not build.
        AlexnetError: If the artifact disagrees with the Keras model (it is then not kept).
    """
    console.ensure_setup()
    spec = FORMATS[check_choice("--format", format, FORMATS)]
    _require(format, spec)
    if check_images < 1:
        raise UsageError(f"--check-images must be a positive integer. Received: {check_images}")
    target = resolve_target(target, "exported")
    trained = load_model(target.model_file)
    model = inference_copy(trained)
    if out is not None and not Path(out).parent.is_dir():
        raise UsageError(f"--out {out}: the folder {Path(out).parent} does not exist")
    out = Path(out) if out else default_path(target, spec)
    images = check_set(model, target.run, data, check_images)
    made = not out.parent.exists()
    out.parent.mkdir(exist_ok=True)  # a run's export/ folder, made once there is something to write
    try:
        figures = _write_checked(model, trained, format, out, images, tolerance)
    except BaseException:
        if made and not any(out.parent.iterdir()):  # a failed export leaves no empty export/ behind
            out.parent.rmdir()
        raise
    return {"path": str(out), "format": format, "bytes": _size(out),
            "runtime": f"{spec.runtime} {importlib.metadata.version(spec.runtime)}", **figures}


def _write_checked(model, trained, format, out, images, tolerance):
    """Exports `model` to a temporary name, runs it in its runtime, and renames it to `out` if it agrees."""
    spec = FORMATS[format]
    tmp = atomic_target(out)
    _remove(tmp)
    try:
        with warnings.catch_warnings():  # Keras's own tf2onnx shim trips a numpy FutureWarning (keras/src/export)
            warnings.filterwarnings("ignore", message="In the future `np.object`", category=FutureWarning)
            model.export(str(tmp), format=spec.keras_format, verbose=False)
        outputs = RUNNERS[format](tmp, images)
        expected = _predict(model, images)
        figures = compare(expected, outputs, tolerance)
        if not figures["passes"]:
            raise AlexnetError(
                f"the {format} export does not match the Keras model on {figures['images']} images "
                f"(top-1 agreement {figures['agreement']:.2%}, largest probability difference "
                f"{figures['max_abs_diff']:.2e}, allowed {tolerance:.0e}); nothing was written")
        policy = trained.get_layer("conv1").dtype_policy.name
        if policy != "float32":  # what the float32 export gives up, for the record
            figures["trained_dtype_policy"] = policy
            figures["agreement_with_trained"] = float(np.mean(expected.argmax(-1) == _predict(trained, images).argmax(-1)))
        _remove(out)
        os.replace(tmp, out)
    finally:
        _remove(tmp)
    return figures


def _require(format, spec):
    """Refuses, naming the install command, when the export extra is not installed."""
    import keras

    backend = keras.backend.backend()
    if backend not in spec.backends:
        raise UsageError(f"--format {format} does not export from the {backend} backend; run the export with "
                         f"--backend {spec.backends[0]} (the model file and the artifact are the same whatever the "
                         f"backend; it exports from: {', '.join(spec.backends)})")
    needed = [spec.runtime_module, *(spec.converters if backend != "torch" else ())]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"--format {format} needs {', '.join(missing)}, which is not installed; "
                         'install the export extra: pip install -e ".[export]"')


def inference_copy(model):
    """The model rebuilt for inference: float32, no augmentation layers, the trained weights.

    Raises:
        UsageError: If the model was not built by this package (its name is not one of ours).
    """
    import keras

    from alexnet.model.builders import build_model

    name = model.name.replace("_", "-")
    if name not in MODELS:
        raise UsageError(f"the model is named {model.name!r}; only models built by alexnet ({', '.join(MODELS)}) "
                         "can be exported")
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = build_model(name, input_shape=model.input_shape[1:], num_classes=model.output_shape[-1],
                           image_size=model.get_layer("resize").get_config()["height"])
    finally:
        keras.config.set_dtype_policy(policy)
    for layer in copy.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    copy(np.zeros((1, *copy.input_shape[1:]), np.uint8), training=False)  # ONNX export wants a model called once
    return copy


def default_path(target, spec):
    """export/model.<suffix> in a run folder (a runs.Target); <model>.<suffix> beside a bare .keras file."""
    if target.run is not None:
        return target.run.export_dir / ("savedmodel" if not spec.suffix else f"model{spec.suffix}")
    return target.model_file.with_name(target.model_file.stem + (spec.suffix or "_savedmodel"))


def check_set(model, run, data, count):
    """uint8 images for the check: `count` test images of `data` or of the run (a RunFolder), else random ones."""
    if data is None and run is None:
        console.note(log, f"no --data for a bare model file: the check uses {count} random images; give --data "
                          "to check on real ones")
        return np.random.default_rng(0).integers(0, 256, (count, *model.input_shape[1:]), dtype=np.uint8)
    images = test_split(model, run, data, limit_test=count)[0].images
    if isinstance(images, np.ndarray):
        return images
    from alexnet.pipeline.streams import decoded  # a streamed test split: its first files, decoded

    return decoded(images.index, range(min(count, len(images))), images.transform)[0]


def compare(expected, outputs, tolerance):
    """Agreement figures of the artifact's probabilities against Keras's, both (N, classes), and whether it passes."""
    expected, outputs = np.asarray(expected, np.float64), np.asarray(outputs, np.float64)
    if outputs.shape != expected.shape:
        raise AlexnetError(f"the export returns shape {outputs.shape}; the Keras model returns {expected.shape}")
    differ = np.argmax(outputs, -1) != np.argmax(expected, -1)
    top2 = np.sort(expected, -1)[:, -2:]
    ties = int(np.sum(differ & (top2[:, 1] - top2[:, 0] <= 2 * tolerance)))  # each side may move by tolerance
    largest = float(np.max(np.abs(outputs - expected)))
    # The pass rule. Within the tolerance a top-1 class can only flip between classes tied within twice of it,
    # so the tolerance is the whole rule; agreement and ties are reported beside it.
    return {"images": len(expected), "agreement": float(1 - differ.mean()), "disagreements": int(differ.sum()),
            "ties": ties, "max_abs_diff": largest, "passes": largest <= tolerance}


def _predict(model, images):
    return np.asarray(model.predict(images, batch_size=CHECK_BATCH, verbose=0))


def _run_savedmodel(path, images):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept referenced: it owns the variables that `serve` reads
    return np.concatenate([loaded.serve(tf.constant(images[i:i + CHECK_BATCH])).numpy()
                           for i in range(0, len(images), CHECK_BATCH)])


def _run_onnx(path, images):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[i:i + CHECK_BATCH]})[0]
                           for i in range(0, len(images), CHECK_BATCH)])


def _run_tflite(path, images):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    given, returned = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for i in range(0, len(images), CHECK_BATCH):
        batch = images[i:i + CHECK_BATCH]
        interpreter.resize_tensor_input(given["index"], batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(given["index"], batch)
        interpreter.invoke()
        results.append(interpreter.get_tensor(returned["index"]))
    return np.concatenate(results)


RUNNERS = {"savedmodel": _run_savedmodel, "onnx": _run_onnx, "tflite": _run_tflite}


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _size(path):
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
