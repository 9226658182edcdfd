"""Export: each format written, then loaded by the runtime that serves it and compared with Keras."""

import importlib.util
import shutil

import numpy as np
import pytest
from conftest import TINY, run_cli

from alexnet.cli import main
from alexnet.errors import AlexnetError, UsageError
from alexnet.results import exporting as export_module

ONE_EPOCH = [*TINY, "--limit-train", "64", "--limit-test", "48", "--epochs", "1"]
RUNS = {  # name: flags; the second has augmentation, LRN and a mixed-precision policy to be taken out
    "tutorial": ["--recipe", "tutorial"],
    "fast-lrn-mixed": ["--recipe", "fast", "--model", "alexnet-lrn", "--mixed-precision"],
}
RUNTIME = {"savedmodel": "tensorflow", "onnx": "onnxruntime", "tflite": "ai_edge_litert"}


@pytest.fixture(scope="module")
def runs(cifar_slice, tmp_path_factory):
    folders = {}
    for name, flags in RUNS.items():
        folders[name] = tmp_path_factory.mktemp("export") / name
        assert main(["train", "--data", str(cifar_slice), *ONE_EPOCH, *flags, "--run-dir", str(folders[name])]) == 0
    return folders


def _a_format_this_backend_exports():
    """The suite runs on every backend; each exports some formats (exporting.FORMATS)."""
    import keras

    return next(name for name, spec in export_module.FORMATS.items() if keras.backend.backend() in spec.backends)


def _keras_probabilities(run_dir, images):
    from alexnet.results.loading import load_model

    return np.asarray(load_model(run_dir / "model.keras").predict(images, verbose=0))


def _runtime_probabilities(fmt, path, images):
    """The artifact run here by its runtime directly, independently of export's own check."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].type == "tensor(uint8)"
        return session.run(None, {session.get_inputs()[0].name: images})[0]
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        serving = loaded.signatures["serving_default"]  # what TensorFlow Serving calls
        assert list(serving.structured_input_signature[1].values())[0].dtype == tf.uint8
        [output] = serving(tf.constant(images)).values()
        np.testing.assert_allclose(output.numpy(), loaded.serve(tf.constant(images)).numpy(), atol=1e-6)
        return output.numpy()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    given = interpreter.get_input_details()[0]
    assert given["dtype"] == np.uint8
    interpreter.resize_tensor_input(given["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(given["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("fmt", ["savedmodel", "onnx", "tflite"])
@pytest.mark.parametrize("run", list(RUNS))
def test_export_is_equal_in_the_runtime_that_serves_it(runs, fmt, run, cifar_slice, capsys):
    if importlib.util.find_spec(RUNTIME[fmt]) is None:
        pytest.skip(f"{RUNTIME[fmt]} is not installed (pip install -e '.[export]')")
    import keras

    if keras.backend.backend() not in export_module.FORMATS[fmt].backends:  # the suite runs on this backend
        assert main(["export", str(runs[run]), "--format", fmt]) == 2
        assert "run the export with --backend tensorflow" in capsys.readouterr().err
        return
    assert main(["export", str(runs[run]), "--format", fmt, "--check-images", "40"]) == 0
    printed = capsys.readouterr().out
    assert "top-1 agreement 100.00%" in printed and "on 40 images" in printed
    path = runs[run] / "export" / ("savedmodel" if fmt == "savedmodel" else f"model.{fmt}")
    assert path.exists() and not list(path.parent.glob(".*tmp*"))
    # Checked again here, outside export(): raw uint8 test images in, probabilities out, as Keras gives them.
    from alexnet.data import load_dataset

    images = load_dataset(str(cifar_slice), test_only=True).x_test[:16]
    got = np.asarray(_runtime_probabilities(fmt, path, images))
    expected = _keras_probabilities(runs[run], images)
    assert got.shape == (16, 10) and np.allclose(got.sum(-1), 1, atol=1e-5)
    if run == "tutorial":  # a float32 run: the same numbers
        np.testing.assert_allclose(got, expected, atol=1e-4)
    else:  # trained in bfloat16: the float32 export may differ a little from the bfloat16 model, not much
        assert np.mean(got.argmax(-1) == expected.argmax(-1)) >= 0.75


def test_the_exported_copy_is_float32_without_augmentation(runs):
    from alexnet.results.loading import load_model

    model = load_model(runs["fast-lrn-mixed"] / "model.keras")
    assert model.get_layer("conv3").dtype_policy.name == "mixed_bfloat16"
    assert "augment" in [layer.name for layer in model.layers]
    copy = export_module.inference_copy(model)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    assert "augment" not in [layer.name for layer in copy.layers]
    for layer in copy.layers:
        for mine, theirs in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)


def test_a_disagreeing_artifact_fails_and_is_not_kept(runs, monkeypatch, capsys, tmp_path):
    fmt = _a_format_this_backend_exports()
    real = export_module.RUNNERS[fmt]
    monkeypatch.setitem(export_module.RUNNERS, fmt, lambda path, images: real(path, images)[:, ::-1])
    out = runs["tutorial"] / "export" / "broken"
    assert main(["export", str(runs["tutorial"]), "--format", fmt, "--out", str(out), "--check-images", "8"]) == 1
    assert "does not match the Keras model" in capsys.readouterr().err
    assert not out.exists() and not list(out.parent.glob(".broken*"))
    fresh = tmp_path / "run"  # a run without export/ yet
    fresh.mkdir()
    for name in ("config.json", "model.keras"):
        shutil.copy(runs["tutorial"] / name, fresh / name)
    assert main(["export", str(fresh), "--format", fmt, "--check-images", "8"]) == 1
    assert not (fresh / "export").exists(), "a failed export left an empty export/ folder"


@pytest.mark.parametrize("expected,got,agreement,ties,fails", [
    ([[0.9, 0.1], [0.2, 0.8]], [[0.9, 0.1], [0.2, 0.8]], 1.0, 0, False),
    ([[0.50002, 0.49998]], [[0.49998, 0.50002]], 0.0, 1, False),  # a tie within the tolerance may flip
    ([[0.6, 0.4]], [[0.4, 0.6]], 0.0, 0, True),
    ([[0.9, 0.1]], [[0.8998, 0.1002]], 1.0, 0, True),  # same class, a probability off by twice the tolerance
])
def test_compare(expected, got, agreement, ties, fails):
    figures = export_module.compare(np.array(expected), np.array(got), tolerance=1e-4)
    assert figures["agreement"] == agreement and figures["ties"] == ties
    assert figures["passes"] is not fails  # export's own rule, the one `export` applies


def test_unknown_format_and_missing_extra(runs, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(runs["tutorial"]), "--format", "pickle"])
    assert exit_info.value.code == 2
    with pytest.raises(UsageError, match="--format must be one of"):
        export_module.export(runs["tutorial"], format="pickle")
    fmt = _a_format_this_backend_exports()  # with its runtime hidden
    hidden = export_module.FORMATS[fmt].runtime_module
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == hidden else real(name, *a))
    assert main(["export", str(runs["tutorial"]), "--format", fmt]) == 2
    assert 'pip install -e ".[export]"' in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_a_backend_that_cannot_export_the_format_is_refused_with_the_one_to_use(runs):
    done = run_cli("export", runs["tutorial"] / "model.keras", "--format", "tflite", "--backend", "jax")
    assert done.returncode == 2, done.stderr
    assert "--format tflite does not export from the jax backend; run the export with --backend tensorflow" in done.stderr


def test_a_model_alexnet_did_not_build_is_refused(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3), dtype="uint8")
    other = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)), name="someone_elses")
    with pytest.raises(UsageError, match="only models built by alexnet"):
        export_module.inference_copy(other)
    with pytest.raises(AlexnetError):
        export_module.compare(np.zeros((2, 3)), np.zeros((2, 4)), 1e-4)
