"""The benchmark scripts' bookkeeping (their timings are not tests)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import run  # noqa: E402  bench/run.py

OLD = """# Benchmarks

old intro

## Input pipeline

old figures

## GPU

Measured on 1x NVIDIA H100: 21,000 images/s

## Time to accuracy

84% in 30 minutes
"""
NEW = """# Benchmarks

new intro

## Input pipeline

new figures

## GPU

Not measured yet: no GPU machine was lent.
"""


def test_the_suite_keeps_sections_it_does_not_write_and_measured_gpu_figures():
    merged = run.merge(OLD, NEW)
    assert "new intro" in merged and "new figures" in merged and "old figures" not in merged
    assert "21,000 images/s" in merged and "Not measured yet" not in merged
    assert "## Time to accuracy\n\n84% in 30 minutes" in merged


def test_a_placeholder_gpu_section_is_replaced():
    assert "Not measured yet" in run.merge(NEW.replace("new", "old"), NEW)


def test_data_at_scale_writes_its_own_section_and_nothing_else(tmp_path, monkeypatch):
    import json

    import data_at_scale  # bench/data_at_scale.py

    (tmp_path / "BENCHMARKS.md").write_text(OLD + "\n## Data at scale\n\nold scale figures\n\n## Later\n\nkept\n")
    results = tmp_path / "results.json"
    row = {"images": 1000, "stream": True, "load_seconds": 2.0, "images_per_s": 400.0, "peak_rss_mb": 2048.0,
           "index_bytes_per_image": 33.0, "folder_images": 1000}
    results.write_text(json.dumps({"scale": {"rows": [{**row, "load": "first"}, {**row, "load": "cached"}],
                                             "steps": 30, "machine": "m", "versions": "v", "date": "d",
                                             "command": "c"}}))
    monkeypatch.setattr(data_at_scale, "ROOT", tmp_path)
    monkeypatch.setattr(data_at_scale, "RESULTS", results)
    runs = tmp_path / "time_to_accuracy.json"  # the CIFAR-10 comparison: paired by machine, other machines left out
    run = {"seed": 42, "wall_seconds": 600.0, "test_accuracy": 0.7, "machine": "m"}
    runs.write_text(json.dumps([{**run, "config": "cpu-4k", "images_per_s": 400.0},
                                {**run, "config": "cpu-4k", "images_per_s": 900.0, "machine": "other"},
                                {**run, "config": "cpu-4k-streamed", "images_per_s": 360.0, "test_accuracy": 0.705}]))
    monkeypatch.setattr(data_at_scale, "TIME_TO_ACCURACY", runs)
    data_at_scale.write()
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert text.startswith("# Benchmarks\n\nold intro") and "84% in 30 minutes" in text and "kept" in text
    assert "old scale figures" not in text and text.count("## Data at scale") == 1
    assert "| 1,000 | streamed | 2 | 2 | 400 ± 0 (n=2) | 2,048 | 33 |" in text
    assert "| streamed | 42 | 360 (n=1) | 600 (n=1) | 70.50 (n=1) |" in text
    assert "Streamed at 0.90x the in-memory images/s; test accuracy +0.50 points." in text


def test_replicated_folders_are_hard_links_to_the_source(tmp_path, monkeypatch):
    import data_at_scale

    for name in ("train/cat/0001.jpg", "train/dog/0002.jpg", "test/cat/0003.jpg"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(name.encode())
    monkeypatch.setattr(data_at_scale, "WORK", tmp_path / "work")
    folder = data_at_scale.replicated_folder(5, tmp_path / "src")
    train = sorted((folder / "train").rglob("*.jpg"))
    assert len(train) == 5 and len(list((folder / "test").rglob("*.jpg"))) == 1
    assert {p.stat().st_ino for p in train} == {(tmp_path / "src" / n).stat().st_ino
                                                for n in ("train/cat/0001.jpg", "train/dog/0002.jpg")}


def test_the_peer_counts_the_flop_of_our_own_layers():
    import peer

    from alexnet.model.builders import alexnet

    for size in (67, 227):
        model = alexnet(image_size=size)
        macs = 0
        for layer in model.layers:
            if layer.name.startswith("conv"):
                _, height, width, filters = layer.output.shape
                macs += height * width * filters * int(np_prod(layer.kernel.shape[:3]))
            elif layer.name.startswith(("fc", "predictions")):
                macs += int(np_prod(layer.kernel.shape))
        assert peer.training_flop(size) == 6 * macs  # forward 2 x multiply-adds, a training step 3x that
    assert round(peer.training_flop(67) / 1e9, 2) == 0.50


def np_prod(values):
    result = 1
    for value in values:
        result *= int(value)
    return result


def test_the_hand_written_pytorch_loop_trains_the_same_network():
    torch = pytest.importorskip("torch")
    import numpy as np
    import peer

    from alexnet.model.builders import alexnet

    for size in (67, 227):
        ours = sum(int(np_prod(w.shape)) for w in alexnet(image_size=size).trainable_weights)
        assert sum(p.numel() for p in peer.torch_model(size).parameters()) == ours
    torch.manual_seed(0)
    step, _ = peer.torch_step_function(67, 8)
    images, labels = peer.batches(8, 0, count=1)[0]
    losses = [step(images, labels) for _ in range(5)]
    assert all(np.isfinite(losses)) and max(losses[-2:]) < losses[0] - 0.1  # it learns the batch (10 seeds tried)
    model = peer.torch_model(67).eval()
    with torch.no_grad():
        assert tuple(model(torch.from_numpy(images)).shape) == (8, 10)


def test_the_peer_section_gives_ratios_to_the_loop_and_fractions_of_the_limit(monkeypatch):
    import peer

    monkeypatch.setattr(run, "machine", lambda: "a test CPU")
    flop = peer.training_flop(67)
    rows = {("matmul-torch", 0, 0): [{"gflops": 100.0}, {"gflops": 100.0}],
            ("torch-loop", 67, 256): [{"images_per_s": 50.0, "threads": 2}, {"images_per_s": 50.0, "threads": 2}],
            ("ours-tensorflow", 67, 256): [{"images_per_s": 100.0, "jit": False, "dtype_policy": "float32",
                                            "onednn": True}] * 2}
    text = peer.section(rows, 2, 6, ["tensorflow"])
    assert text.startswith(f"## {peer.TITLE}") and "a test CPU" in text
    ours = next(line for line in text.splitlines() if line.startswith("| ours, tensorflow"))
    gflops = 100.0 * flop / 1e9
    assert ours.split(" | ")[1:] == ["float32, XLA off, oneDNN on", "100.0 ± 0.0", "2.00", f"{gflops:.1f}",
                                     f"{gflops / 100.0:.0%} |"]
    assert "stays float32" not in text  # said only where ours runs a lower precision than the loop
    rows[("ours-tensorflow", 67, 256)] = [{**rows[("ours-tensorflow", 67, 256)][0], "dtype_policy": "mixed_bfloat16"}]
    assert "chooses mixed_bfloat16, while the loop a PyTorch user writes stays float32" in peer.section(
        rows, 2, 6, ["tensorflow"])


def test_the_levers_section_rates_each_lever_against_the_default_and_the_loop(monkeypatch):
    import peer

    monkeypatch.setattr(run, "machine", lambda: "a test CPU")
    settings = {"jit": False, "dtype_policy": "float32", "onednn": True}
    default, threads, compiled = (lever[0] for lever in (peer.LEVERS[0], peer.LEVERS[1], peer.LEVERS[-1]))
    rows = {"torch-loop": [{"images_per_s": 50.0, "threads": 2}] * 2,
            default: [{"images_per_s": 100.0, **settings}, {"images_per_s": 110.0, **settings}],
            threads: [{"images_per_s": 84.0, **settings}] * 2,
            compiled: [{"failed": "no C compiler"}, {"images_per_s": 1.0, **settings}]}
    text = peer.levers_section(rows, 2, 6)
    assert text.startswith("## Levers tried on the step") and "a test CPU" in text and "50.0 ± 0.0" in text
    row = lambda name: next(line for line in text.splitlines() if line.startswith(f"| {name} |"))  # noqa: E731
    assert row(default).split(" | ")[2:] == ["105.0 ± 7.1", "1.00", "2.10 |"]
    assert row(threads).split(" | ")[2:] == ["84.0 ± 0.0", "0.80", "1.68 |"]
    assert "failed: no C compiler" in row(compiled)  # one failed process fails the lever: no mean of the rest
    assert len([line for line in text.splitlines() if line.startswith("| ") and "---" not in line]) == 4
