"""Time to accuracy: whole `alexnet train` commands on full CIFAR-10, timed, over seeds.

    python bench/time_to_accuracy.py run CONFIG [CONFIG ...] [--seeds 42 43 44] [--data PATH]
    python bench/time_to_accuracy.py throughput [--sizes 67 99 131 163 227]
    python bench/time_to_accuracy.py write      # BENCHMARKS.md's section and the plot, from the results file

Each run is one process on the full split (45,000 train, 5,000 validation,
10,000 test images), timed from its start to its exit, with the decoded-image
cache warm (a first, untimed load fills it). Runs use `--test-each-epoch` so
that the plot can show test accuracy along the way; the seconds that those
per-epoch test passes take are measured by the run itself and subtracted from
its wall-clock, so the times are those of the command without them. Nothing is
chosen on test accuracy: the final model is evaluated once.

Results accumulate in bench/results/time_to_accuracy.json, one record per run
with the machine, versions and commit, so that runs made in several sessions
(or on several machines) go into one table. Run the timings alone on the
machine: no test suite or other work beside them.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run import cpu_name, instruction_sets  # bench/run.py, beside this script (it puts the checkout on sys.path)

from alexnet.runs import RunFolder

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "time_to_accuracy.json"
PLOT = ROOT / "docs" / "time_to_accuracy.png"  # a picture shown in BENCHMARKS.md
BENCHMARKS = ROOT / "BENCHMARKS.md"
SECTION = "## Time to accuracy"
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"

SLICE = ["--limit-train", "4000", "--val-size", "1000", "--limit-test", "2000"]
# name: (what it is, `alexnet train` flags). Epoch counts are fitted to the budget on the 2-core CPU.
CONFIGS = {
    "cpu-10min": ("cpu recipe, 4 epochs (10-minute budget)", ["--recipe", "cpu", "--epochs", "4"]),
    "cpu-10min-streamed": ("cpu recipe, 4 epochs, streamed from the JPEG files (against cpu-10min)",
                           ["--recipe", "cpu", "--epochs", "4", "--stream"]),
    # Streamed against in memory on a slice (the full split's 4 epochs take 40 minutes a run on a 2-core EPYC).
    "cpu-4k": ("cpu recipe, 4 epochs on 4,000 training images", ["--recipe", "cpu", "--epochs", "4"] + SLICE),
    "cpu-4k-streamed": ("cpu recipe, 4 epochs on 4,000 training images, streamed from the JPEG files",
                        ["--recipe", "cpu", "--epochs", "4", "--stream"] + SLICE),
    "cpu-20min": ("cpu recipe, 9 epochs (20-minute budget)", ["--recipe", "cpu", "--epochs", "9"]),
    "cpu-30min": ("cpu recipe, 14 epochs (30-minute budget)", ["--recipe", "cpu", "--epochs", "14"]),
    # A faster machine (a 2-core AMD EPYC with AVX512-BF16: about 56 s an epoch): its 30-minute budget, and 26 epochs
    # against about as many images (1.15 against 1.17 million) with no validation: the final fit on all 50,000.
    "cpu-26epochs": ("cpu recipe, 26 epochs (25 minutes on the 2-core AVX512-BF16 EPYC)",
                     ["--recipe", "cpu", "--epochs", "26"]),
    "cpu-30epochs": ("cpu recipe, 30 epochs (30-minute budget on the 2-core AVX512-BF16 EPYC)",
                     ["--recipe", "cpu", "--epochs", "30"]),
    "cpu-all-23epochs": ("cpu recipe, 23 epochs on all 50,000 training images, no validation (about as many "
                         "images as cpu-26epochs)", ["--recipe", "cpu", "--epochs", "23", "--val-size", "0"]),
    # A lever of issue 21 on the same machine: the weight average (--ema: the final model averages the weights over
    # about the last fifth of the steps).
    "cpu-10min-ema": ("cpu recipe, 4 epochs, weight average over the last 20% of the steps",
                      ["--recipe", "cpu", "--epochs", "4", "--ema", "0.2"]),
    "cpu-30epochs-ema": ("cpu recipe, 30 epochs, weight average over the last 20% of the steps",
                         ["--recipe", "cpu", "--epochs", "30", "--ema", "0.2"]),
    "tutorial-67-10min": ("tutorial recipe at 67x67, 3 epochs (10-minute budget)",
                          ["--recipe", "tutorial", "--image-size", "67", "--epochs", "3"]),
    "cpu-99-10min": ("cpu recipe at 99x99, 2 epochs (10-minute budget)",
                     ["--recipe", "cpu", "--image-size", "99", "--epochs", "2"]),
    "cpu-131-10min": ("cpu recipe at 131x131, 1 epoch (10-minute budget)",
                      ["--recipe", "cpu", "--image-size", "131", "--epochs", "1"]),
    "cpu-163-1epoch": ("cpu recipe at 163x163, 1 epoch (no epoch fits in 10 minutes)",
                       ["--recipe", "cpu", "--image-size", "163", "--epochs", "1"]),
}

# The resolution question: the cpu recipe at each image size, given what a 10-minute budget allows.
BY_IMAGE_SIZE = {67: "cpu-10min", 99: "cpu-99-10min", 131: "cpu-131-10min", 163: "cpu-163-1epoch"}


def machine():
    return f"{cpu_name()} ({instruction_sets()}), {os.cpu_count()} cores"  # "AMD EPYC" alone names three kinds


def versions():
    found = {"python": platform.python_version()}
    for name in ("numpy", "keras", "tensorflow"):  # from the installed metadata: importing TensorFlow is slow
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def commit():
    try:
        return subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_results():
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else []


def save_results(results):
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, RESULTS)


def _use_results_file(path):
    """Points the results (and plot and BENCHMARKS.md) elsewhere: for a smoke test of this script."""
    global RESULTS, PLOT, BENCHMARKS
    RESULTS = Path(path)
    PLOT = RESULTS.with_suffix(".png")
    BENCHMARKS = RESULTS.with_suffix(".md")


def alexnet_command():
    return [sys.executable, "-m", "alexnet"]


def warm_cache(data):
    """Loads the data once (untimed), so that every timed run starts from the decoded-image cache (and the streamed
    runs from the cached file index)."""
    code = ("from alexnet.data import load_dataset; import sys; load_dataset(sys.argv[1]); "
            "load_dataset(sys.argv[1], stream=True)")
    done = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cannot load {data}:\n{done.stderr[-3000:]}")


def run_one(name, seed, data, out, extra=()):
    """Runs one configuration with one seed; returns its record."""
    run_dir = Path(out) / f"{name}-seed{seed}"
    command = [*alexnet_command(), "train", "--data", str(data), *CONFIGS[name][1], "--seed", str(seed),
               "--test-each-epoch", "--run-dir", str(run_dir), "--overwrite", *extra]
    print("$", " ".join(command[2:]), flush=True)
    log = Path(out) / f"{name}-seed{seed}.log"
    started_at, started = time.time(), time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name} seed {seed} failed (exit {done.returncode}); see {log}")
    folder = RunFolder(run_dir)
    history, metrics, config = folder.read_history(), folder.read_metrics(), folder.read_config()
    test_seconds = sum(float(row["test_seconds"]) for row in history)
    curve, spent = [], 0.0
    for row in history:  # where each epoch ended on the command's clock, per-epoch test passes taken out
        spent += float(row["test_seconds"])
        curve.append([float(row["finished_at"]) - started_at - spent, float(row["test_accuracy"])])
    record = {
        "config": name, "flags": CONFIGS[name][1], "seed": seed, "wall_seconds": wall - test_seconds,
        "wall_seconds_with_test_passes": wall, "test_accuracy": metrics["test_accuracy"],
        "tta_test_accuracy": metrics.get("tta_test_accuracy"), "epochs": len(history),
        "images_per_s": statistics.median(float(row["images_per_s"]) for row in history),
        "best_val_accuracy": max((row["val_accuracy"] for row in history if "val_accuracy" in row), default=None),
        "curve": curve,
        "dtype_policy": config["speed"]["dtype_policy"], "image_size": config["settings"]["image_size"],
        "machine": machine(), "versions": versions(), "commit": commit(),
        "date": datetime.date.today().isoformat(),
    }
    print(f"  {wall - test_seconds:.0f} s, test accuracy {record['test_accuracy']:.4f}"
          f" (with TTA {record['tta_test_accuracy']})", flush=True)
    return record


def throughput(sizes, batch_size, seconds):
    """Training images/s of the cpu recipe's model and step at each image size (in-process, synthetic batches)."""
    code = f"""
import json, sys, time
import numpy as np
import keras
from alexnet.model import compiling
from alexnet.settings import recipes
from alexnet.backend import speed_settings
from alexnet.settings.config import TrainConfig
from alexnet.model.builders import build_model
speed = speed_settings()
keras.config.set_dtype_policy(speed["dtype_policy"])
size = int(sys.argv[1])
config = TrainConfig(recipe="cpu", image_size=size, batch_size={batch_size})
model = build_model("alexnet", input_shape=(32, 32, 3), num_classes=10, image_size=size,
                    augmentation=compiling.augmentation("cpu", 0))
compiling.compile_model(model, config, steps_per_epoch=100)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, ({batch_size}, 32, 32, 3), dtype=np.uint8)
y = np.eye(10, dtype="float32")[rng.integers(0, 10, {batch_size})]
for _ in range(2):
    model.train_on_batch(x, y)
steps, started = 0, time.perf_counter()
while time.perf_counter() - started < {seconds} or steps < 2:
    model.train_on_batch(x, y)
    steps += 1
print(json.dumps({{"image_size": size, "images_per_s": steps * {batch_size} / (time.perf_counter() - started),
                  "dtype_policy": speed["dtype_policy"]}}))
"""
    found = []
    for size in sizes:
        done = subprocess.run([sys.executable, "-c", code, str(size)], capture_output=True, text=True, check=True)
        found.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {size}x{size}: {found[-1]['images_per_s']:.0f} images/s", flush=True)
    return found


def _mean_std(values, scale=1.0, digits=None):
    """'mean ± std (n=...)' of the values that are not None, times `scale`."""
    values = [scale * v for v in values if v is not None]
    if not values:
        return "-"
    number = (lambda v: f"{v:.{digits}f}") if digits is not None else (lambda v: f"{v:.4g}")
    if len(values) == 1:
        return f"{number(values[0])} (n=1)"
    return f"{number(statistics.mean(values))} ± {number(statistics.stdev(values))} (n={len(values)})"


def _outcome(runs):
    """The table cells 'wall-clock (s) | test accuracy (%) | with TTA (%)' over the runs of one configuration."""
    return (f"{_mean_std([r['wall_seconds'] for r in runs], 1, 0)} | "
            f"{_mean_std([r['test_accuracy'] for r in runs], 100, 2)} | "
            f"{_mean_std([r['tta_test_accuracy'] for r in runs], 100, 2)}")


def plot(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    results = [r for r in results if r["machine"] == results[-1]["machine"]]  # the newest machine's clock alone
    for index, name in enumerate(dict.fromkeys(r["config"] for r in results)):
        runs = [r for r in results if r["config"] == name]
        for i, run in enumerate(runs):
            minutes = [0.0] + [t / 60 for t, _ in run["curve"]]
            accuracy = [10.0] + [100 * a for _, a in run["curve"]]
            axes.plot(minutes, accuracy, color=f"C{index}", alpha=0.8, marker=".",
                      label=f"{name} (n={len(runs)})" if i == 0 else None)
    axes.axhline(74.4, color="gray", linestyle=":", label="the tutorial's 74.4% (50 epochs, GPU)")
    axes.set_xlabel("wall-clock minutes, whole command (per-epoch test passes taken out)")
    axes.set_ylabel("test accuracy (%), single view")
    axes.set_title(f"Time to accuracy, full CIFAR-10, {results[0]['machine']}", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOT, dpi=90)


def _relative(path):
    try:
        return path.relative_to(ROOT)
    except ValueError:
        return path


def section(results, speeds):
    lines = [SECTION, "",
             "Whole `alexnet train` commands on the full split (45,000 train, 5,000 validation, 10,000 test images; "
             "with `--val-size 0`, 50,000 train and no validation), "
             "each timed from process start to exit with the decoded-image cache warm, run alone on the machine. "
             "Accuracy is the final model's, evaluated once on the test split; TTA averages each test image's and "
             "its mirror's predictions. Nothing is selected on test accuracy. Reproduce with "
             "`python bench/time_to_accuracy.py run CONFIG --seeds 42 43 44` then `... write`. A commit marked '-dirty' "
             "differed from it only in the results files this script writes between runs.", "",
             "| configuration | flags | runs | wall-clock (s) | test accuracy (%) | with TTA (%) | images/s | "
             "machine | commit |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for name, where in dict.fromkeys((r["config"], r["machine"]) for r in results):  # one row per machine
        runs = sorted((r for r in results if (r["config"], r["machine"]) == (name, where)), key=lambda r: r["seed"])
        commits = ", ".join(dict.fromkeys(r["commit"] for r in runs))
        lines.append(
            f"| {name} | `{' '.join(runs[0]['flags'])}` | seeds {', '.join(str(r['seed']) for r in runs)} | "
            f"{_outcome(runs)} | {statistics.median(r['images_per_s'] for r in runs):.0f} | {runs[0]['machine']}, "
            f"{runs[0]['dtype_policy']} | {commits} |")
    lines += ["", f"![test accuracy against wall-clock minutes]({_relative(PLOT)})", ""]
    if speeds:
        lines += ["### Which image size: images/s and accuracy in 10 minutes", "",
                  "Images/s: the cpu recipe's model and training step (batch 512) on synthetic batches, in-process, "
                  "after two warm-up steps (`python bench/time_to_accuracy.py throughput`). Accuracy: the whole "
                  "command at that size with the epochs a 10-minute budget allows (the configurations "
                  f"{', '.join(BY_IMAGE_SIZE.values())} above; at 163 not even one epoch fits, so its one epoch "
                  "overruns the budget); the schedule fits itself to the epochs given.", "",
                  "| image size | images/s | relative to 67 | one epoch of 45,000 images | epochs | wall-clock (s) | "
                  "test accuracy (%) | with TTA (%) | dtype | machine |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        base = next((s["images_per_s"] for s in speeds if s["image_size"] == 67), None)
        for s in speeds:
            relative = f"{s['images_per_s'] / base:.2f}" if base else "-"
            runs = [r for r in results if r["config"] == BY_IMAGE_SIZE.get(s["image_size"])
                    and r["machine"] == s["machine"]]
            measured = f"{runs[0]['epochs']} | {_outcome(runs)}" if runs else "- | - | - | -"
            lines.append(f"| {s['image_size']} | {s['images_per_s']:.0f} | {relative} | "
                         f"{45000 / s['images_per_s'] / 60:.1f} min | {measured} | {s['dtype_policy']} | "
                         f"{s['machine']} |")
        lines.append("")
    return lines


def write():
    results = load_results()
    runs = [r for r in results if r.get("kind", "run") == "run"]
    speeds = [r for r in results if r.get("kind") == "throughput"]
    if runs:
        plot(runs)
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    new = "\n".join(section(runs, speeds))
    if SECTION in text:  # replace our section, up to the next section of the same level
        head, rest = text.split(SECTION, 1)
        following = rest.find("\n## ")
        text = head + new.rstrip("\n") + "\n\n" + (rest[following + 1:] if following >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + new
    BENCHMARKS.write_text(text)
    print(f"wrote {BENCHMARKS} and {PLOT}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("configs", nargs="+", choices=list(CONFIGS))
    run.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    run.add_argument("--data", default=str(DEFAULT_DATA))
    run.add_argument("--out", default="/tmp/alexnet-time-to-accuracy", help="where the run folders go")
    run.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                     help="more `alexnet train` flags, for a smoke test (with --results elsewhere)")
    speed = commands.add_parser("throughput")
    speed.add_argument("--sizes", type=int, nargs="+", default=[67, 99, 131, 163, 227])
    speed.add_argument("--batch-size", type=int, default=512)
    speed.add_argument("--seconds", type=float, default=20)
    commands.add_parser("write")
    parser.add_argument("--results", default=None, help=f"results file (default: {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.results:
        _use_results_file(args.results)
    if args.command == "write":
        return write()
    results = load_results()
    if args.command == "throughput":
        for found in throughput(args.sizes, args.batch_size, args.seconds):
            results = [r for r in results if not (r.get("kind") == "throughput" and r["image_size"] ==
                                                  found["image_size"] and r["machine"] == machine())]
            results.append({"kind": "throughput", **found, "machine": machine(), "versions": versions(),
                            "commit": commit(), "date": datetime.date.today().isoformat()})
            save_results(results)
        return write()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    warm_cache(args.data)
    for name in args.configs:
        for seed in args.seeds:
            results.append({"kind": "run", **run_one(name, seed, args.data, args.out, args.extra)})
            save_results(results)  # after every run, so an interrupted session keeps what it measured
    return write()


if __name__ == "__main__":
    sys.exit(main())
