"""The notebooks run from top to bottom at tiny settings: any cell that raises fails the suite."""

import json
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _execute(name, parameters, workdir):
    """Runs a notebook with `parameters` overriding its parameters cell (as papermill does); returns it."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    [index] = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    overrides = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(overrides, metadata={"tags": ["injected-parameters"]}))
    start = time.monotonic()
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}}).execute()
    print(f"{name}: executed in {time.monotonic() - start:.0f} s")
    return notebook


def _text(notebook):
    return "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.get("outputs", []))


def _images(notebook):
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


def test_tutorial_notebook(cifar_slice, tmp_path):
    notebook = _execute("alexnet_tutorial.ipynb", {
        "DATA": str(cifar_slice), "IMAGE_SIZE": 67, "EPOCHS": 1, "LIMIT_TRAIN": 64, "LIMIT_TEST": 40,
        "BATCH_SIZE": 32, "BATCH_SIZES": [4, 8], "TIMED_STEPS": 1, "RUN_ROOT": str(tmp_path / "runs")}, tmp_path)
    text = _text(notebook)
    assert "58,327,818 parameters" in text and "test accuracy" in text and "true class:" in text
    assert "test images found in train or validation: 0" in text
    # samples, preprocessing, curves, confusion, mistakes, filters, neighbours, Grad-CAM, shuffle, batch size
    assert _images(notebook) >= 10
    assert sorted(p.name for p in (tmp_path / "runs" / "alexnet" / "inspect").iterdir()) == [
        "filters.png", "gradcam.png", "neighbours.png"]
    assert (tmp_path / "runs" / "alexnet" / "model.keras").is_file()
    assert (tmp_path / "runs" / "alexnet-lrn" / "metrics.json").is_file()


def test_own_images_notebook(tmp_path):
    notebook = _execute("own_images.ipynb", {
        "IMAGE_FOLDER": str(tmp_path / "shapes"), "GENERATED_PER_CLASS": (20, 6), "EPOCHS": 1, "BATCH_SIZE": 16,
        "RUN_DIR": str(tmp_path / "run"), "EXPORT_FORMAT": "onnx", "FEW_PER_CLASS": (8, 4),
        "FINETUNE_EPOCHS": 1}, tmp_path)
    text = _text(notebook)
    assert "generated" in text and "test accuracy" in text and "->" in text
    assert "fine-tuned from the run: test accuracy" in text and "from scratch: test accuracy" in text
    assert "kept conv1, bn1," in text  # the fine-tuning run says what it kept
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_images"] == 18
    if _exports_onnx():  # CI installs the export extra and runs on TensorFlow: the export must have worked
        assert "top-1 agreement 100%" in text, text[-500:]
    else:  # the notebook says why it skipped (a backend that cannot export ONNX, or no export extra)
        assert "export skipped:" in text and ("does not export from" in text or ".[export]" in text), text[-500:]


def _exports_onnx():
    """Whether the notebook's kernel can export ONNX: its backend (KERAS_BACKEND) and the export extra."""
    import importlib.util
    import os

    from alexnet.settings.choices import FORMATS

    backend = (os.environ.get("KERAS_BACKEND") or "tensorflow")
    needed = ["onnxruntime"] + (["tf2onnx", "onnx"] if backend != "torch" else [])
    return backend in FORMATS["onnx"].backends and all(importlib.util.find_spec(n) for n in needed)


def test_committed_notebooks_are_small_and_carry_their_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        assert path.stat().st_size < 1_000_000, path.name
        assert all(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"
                   and "parameters" not in cell.metadata.get("tags", []) and cell.source.strip()
                   and "SHOW_TENSORBOARD" not in cell.source), f"{path.name} has cells without outputs"
        assert "<iframe" not in json.dumps(notebook), f"{path.name} embeds a TensorBoard frame"
