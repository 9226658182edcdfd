"""Data at scale: streaming from disk against decoding into memory, as the data grows; decoding photos.

    python bench/data_at_scale.py scale [--sizes 50000 200000 800000] [--steps 30]
    python bench/data_at_scale.py decode [--files 1500] [--batches 12]
    python bench/data_at_scale.py write          # the "Data at scale" section of BENCHMARKS.md

`scale` makes image folders of N training images by replicating the CIFAR-10 JPEG copy's 50,000
training files with hard links (the same bytes under N distinct paths, so no disk is spent and the
files are in the page cache, as a second epoch's would be), then, each in a fresh process, loads
the folder (streamed, or decoded into memory), trains the cpu recipe's step (67 px, batch 256) for
--steps steps and reports the load time, the training images/s and the peak RSS.

`decode` writes ImageNet-sized JPEGs (500x375, quality 90: smooth random images with noise, about
ImageNet's 110 KB) and measures the input pipeline alone: ours (tf.data, Grain) and the one a
PyTorch user writes (torchvision ImageFolder + RandomResizedCrop(224) + flip + DataLoader, in the
virtualenv named by $TORCHVISION_PYTHON), with the same workers on the same cores.

The third measurement, CIFAR-10 streamed from its JPEG files against decoded into memory (whole commands of the
cpu recipe, 4 epochs), is made by the time-to-accuracy script, whose results this section reads:

    python bench/time_to_accuracy.py run cpu-4k cpu-4k-streamed --seeds 42 43

(a slice: 4,000 training images. On the full split, `run cpu-10min cpu-10min-streamed`, a run takes about 40
minutes on a 2-core AVX2-class EPYC; those rows go to the time-to-accuracy table.)

Results go to bench/results/data_at_scale.json; `write` renders them into BENCHMARKS.md.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from run import ROOT, machine, versions  # bench/run.py, beside this script

RESULTS = ROOT / "bench" / "results" / "data_at_scale.json"
TIME_TO_ACCURACY = ROOT / "bench" / "results" / "time_to_accuracy.json"
P100_IMAGES_PER_S = 2900  # AlexNet, TensorFlow's benchmarks (tf_cnn_benchmarks), one P100
H100_IMAGES_PER_S = P100_IMAGES_PER_S * 67 / 10.6  # scaled by dense float32 TFLOP/s: an estimate
WORK = Path(os.environ.get("ALEXNET_BENCH_DIR", "/tmp/alexnet-scale"))
ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"

STEP = r"""
import json, resource, sys, time
started = time.perf_counter()
import keras
import numpy as np
from alexnet.pipeline import streams
from alexnet.model import compiling
from alexnet.settings import recipes
from alexnet.backend import speed_settings
from alexnet.settings.config import TrainConfig
from alexnet.model.builders import build_model
from alexnet.pipeline.arrays import training_batches
from alexnet.pipeline.feed import Epochs, Feed
from alexnet.data.splits import load_splits

data, stream, steps = sys.argv[1], sys.argv[2] == "stream", int(sys.argv[3])
keras.config.set_dtype_policy(speed_settings()["dtype_policy"])
splits = load_splits(data, val_size=1000, limit_test=1000, seed=0, stream=stream)
loaded = time.perf_counter() - started
config = TrainConfig(recipe="cpu").resolved()
model = build_model("alexnet", input_shape=(32, 32, 3), num_classes=10, image_size=67,
                    augmentation=compiling.augmentation("cpu", 0))
compiling.compile_model(model, config, steps_per_epoch=steps)
if stream:
    feed = Feed(256, num_classes=10, transform=streams.Transform((32, 32)), skips=streams.SkippedFiles())
    train = streams.training_stream(splits.x_train, splits.y_train, feed, Epochs(0, 1))
else:
    train = training_batches(splits.x_train, splits.y_train, Feed(256, num_classes=10), Epochs(0, 1))


class Clock(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 4:
            self.started = time.perf_counter()
        self.ended, self.batches = time.perf_counter(), batch


clock = Clock()
model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[clock])
print(json.dumps({"images": len(splits.x_train), "stream": stream, "load_seconds": loaded,
                  "images_per_s": 256 * (clock.batches - 4) / (clock.ended - clock.started),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "index_bytes_per_image": (splits.x_train.nbytes + splits.y_train.nbytes) / len(splits.x_train)
                  if stream else None}))
"""

PIPELINE = r"""
import json, os, sys, time
import numpy as np
from alexnet.data import FileIndex
from alexnet.pipeline import streams
from alexnet.pipeline.feed import Epochs, Feed
from alexnet.settings import recipes

engine, root, batches, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), 64
paths = sorted(os.fsencode(os.path.relpath(os.path.join(d, f), root)) for d, _, fs in os.walk(root) for f in fs)
index = FileIndex(__import__("pathlib").Path(root), np.array(paths), (224, 224))
if engine == "tf":
    from alexnet.pipeline import tf_engine as make
else:
    from alexnet.pipeline import grain_engine as make
transform = streams.transforms(recipes.get("imagenet"), (224, 224), 224)[0]  # the random-resized crop and flip
stream = make.training_stream(index, np.zeros(len(paths), np.int64),
                              Feed(batch, transform=transform, skips=streams.SkippedFiles()), Epochs(0, 1))
iterator = iter(stream)
next(iterator), next(iterator)  # warm-up: workers started, the first files read
started = time.perf_counter()
for _ in range(batches):
    next(iterator)
print(json.dumps({"images_per_s": batches * batch / (time.perf_counter() - started)}))
"""

TORCHVISION = r"""
import json, sys, time
import torch
from torchvision import datasets, transforms
root, batches, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
data = datasets.ImageFolder(root, transforms.Compose([transforms.RandomResizedCrop(224),
                                                      transforms.RandomHorizontalFlip(), transforms.PILToTensor()]))
loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, num_workers=workers,
                                     persistent_workers=workers > 0)
iterator = iter(loader)
next(iterator), next(iterator)
started = time.perf_counter()
for _ in range(batches):
    next(iterator)
print(json.dumps({"images_per_s": batches * 64 / (time.perf_counter() - started), "torch": torch.__version__}))
"""


def _run(code, *args, python=sys.executable, env=None):
    done = subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT), **(env or {})},
                          timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _source():
    """The extracted CIFAR-10 JPEG copy (train/<class>/*.jpg, test/<class>/*.jpg)."""
    sys.path.insert(0, str(ROOT))
    from alexnet.data import extract_archive
    from alexnet.data.archives import _dataset_root

    return _dataset_root(extract_archive(ARCHIVE))


def replicated_folder(count, source):
    """An image folder of `count` training images: hard links to the source's training files, round after round,
    and its 10,000 test files."""
    folder = WORK / f"cifar10-x{count}"
    if (folder / ".complete").exists():
        return folder
    train = sorted((source / "train").glob("*/*.jpg"))
    for i in range(count):
        original = train[i % len(train)]
        target = folder / "train" / original.parent.name / f"r{i // len(train)}-{original.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(original, target)
    for original in sorted((source / "test").glob("*/*.jpg")):
        target = folder / "test" / original.parent.name / original.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(original, target)
    (folder / ".complete").write_text("")
    return folder


def photo_folder(count):
    """`count` ImageNet-sized JPEGs (500x375, quality 90) in 10 class folders."""
    import numpy as np
    from PIL import Image, ImageFilter

    folder = WORK / f"photos-{count}"
    if (folder / ".complete").exists():
        return folder
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).resize((500, 375), Image.BICUBIC)
        noise = rng.normal(0, 12, (375, 500, 3))
        pixels = np.clip(np.asarray(coarse.filter(ImageFilter.GaussianBlur(2)), np.float64) + noise, 0, 255)
        target = folder / f"class{i % 10}" / f"{i:05d}.JPEG"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(target, quality=90)
    (folder / ".complete").write_text("")
    return folder


def load():
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def save(results):
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


def scale(sizes, steps, memory_up_to):
    source = _source()
    results = load()
    rows = []
    for count in sizes:
        folder = replicated_folder(count, source)
        for mode in ("stream", "memory"):
            if mode == "memory" and count > memory_up_to:
                continue
            cache = WORK / f"cache-{count}-{mode}"  # a fresh cache: the first load lists (or decodes) everything
            subprocess.run(["rm", "-rf", str(cache)], check=True)
            for attempt in ("first", "cached"):
                found = _run(STEP, folder, mode, steps, env={"ALEXNET_CACHE_DIR": str(cache)})
                found.update(load=attempt, folder_images=count)
                rows.append(found)
                print(f"{count} {mode} ({attempt} load): {found}", flush=True)
    results["scale"] = {"rows": rows, "steps": steps, "machine": machine(), "versions": versions(),
                        "date": datetime.date.today().isoformat(),
                        "command": f"python bench/data_at_scale.py scale --sizes {' '.join(map(str, sizes))} "
                                   f"--steps {steps} --memory-up-to {memory_up_to}"}
    save(results)


def decode(files, batches, workers, repeats):
    folder = photo_folder(files)
    sizes = [p.stat().st_size for p in folder.rglob("*.JPEG")]
    pipelines = {"tf.data (ours)": lambda: _run(PIPELINE, "tf", folder, batches),
                 f"Grain, {workers} workers (ours)": lambda: _run(PIPELINE, "grain", folder, batches,
                                                                  env={"ALEXNET_STREAM_WORKERS": str(workers)})}
    peer = os.environ.get("TORCHVISION_PYTHON")
    if peer:
        pipelines[f"torchvision ImageFolder + DataLoader, {workers} workers"] = (
            lambda: _run(TORCHVISION, folder, batches, workers, python=peer))
    rows = {name: {"runs": []} for name in pipelines}
    for _ in range(repeats):  # round-robin, so that a slow spell of the machine touches every pipeline alike
        for name, measure in pipelines.items():
            found = measure()
            rows[name]["runs"].append(found["images_per_s"])
            rows[name].update({key: value for key, value in found.items() if key != "images_per_s"})
    for name, row in rows.items():
        print(f"{name}: {_spread(row['runs'])} images/s", flush=True)
    results = load()
    results["decode"] = {"rows": rows, "files": files, "mean_kb": sum(sizes) / len(sizes) / 1024,
                         "cores": os.cpu_count(), "machine": machine(), "versions": versions(),
                         "date": datetime.date.today().isoformat(),
                         "command": f"TORCHVISION_PYTHON=... python bench/data_at_scale.py decode --files {files} "
                                    f"--batches {batches} --workers {workers} --repeats {repeats}"}
    save(results)


def _spread(values, digits=0):
    """'mean ± std (n=...)'."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n=1)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f} (n={len(values)})"


def _cifar_lines():
    """CIFAR-10 streamed against in memory, from the time-to-accuracy runs of one machine."""
    runs = json.loads(TIME_TO_ACCURACY.read_text()) if TIME_TO_ACCURACY.is_file() else []
    streamed = [r for r in runs if r.get("config") == "cpu-4k-streamed"]
    if not streamed:
        return []
    where = streamed[-1]["machine"]
    pair = {name: [r for r in runs if r.get("config") == name and r["machine"] == where]
            for name in ("cpu-4k", "cpu-4k-streamed")}
    lines = ["CIFAR-10 from its JPEG folder, streamed against decoded into memory: whole `alexnet train --recipe cpu "
             "--epochs 4` commands (67 px, batch 256) on a slice (`--limit-train 4000 --val-size 1000 --limit-test "
             "2000`: the full split's 4 epochs take about 40 minutes a run on this 2-core machine), the in-memory "
             "one from the decoded-image cache, the streamed one with `--stream` (tf.data reads and decodes every "
             "JPEG each epoch), on the same machine, one after the other; images/s is each run's median epoch.", "",
             f"- Machine: {where}", "- Command: `python bench/time_to_accuracy.py run cpu-4k cpu-4k-streamed "
             "--seeds 42 43`", "",
             "| path | seeds | training images/s | wall-clock (s) | test accuracy (%) |", "| --- | --- | ---: | ---: | ---: |"]
    for name, label in (("cpu-4k", "in memory"), ("cpu-4k-streamed", "streamed")):
        found = pair[name]
        if found:
            lines.append(f"| {label} | {', '.join(str(r['seed']) for r in found)} | "
                         f"{_spread([r['images_per_s'] for r in found])} | "
                         f"{_spread([r['wall_seconds'] for r in found])} | "
                         f"{_spread([100 * r['test_accuracy'] for r in found], 2)} |")
    if pair["cpu-4k"]:
        memory, stream = ([statistics.mean(r[key] for r in pair[name]) for name in ("cpu-4k", "cpu-4k-streamed")]
                          for key in ("images_per_s", "test_accuracy"))
        lines += ["", f"Streamed at {memory[1] / memory[0]:.2f}x the in-memory images/s; test accuracy "
                      f"{100 * (stream[1] - stream[0]):+.2f} points."]
    return lines + [""]


def section(results):
    lines = ["## Data at scale", ""]
    if "scale" in results:
        found = results["scale"]
        lines += [f"Cost as the data grows: image folders of N training images made by hard-linking the CIFAR-10 JPEG "
                  f"copy's 50,000 training files round after round (the same bytes under N paths: no disk spent, and "
                  f"the files sit in the page cache as a second epoch's would), each loaded in a fresh process, "
                  f"streamed or decoded into memory, then {found['steps']} training steps of the cpu recipe (67 px, "
                  "batch 256; images/s from step 5 on, over the two processes). The first load lists (streamed) or decodes (in memory) "
                  "every file; the cached load reads the index or the decoded arrays from the cache.", "",
                  f"- Machine: {found['machine']}", f"- Versions: {found['versions']}",
                  f"- Command: `{found['command']}` ({found['date']})", "",
                  "| images | path | first load (s) | cached load (s) | training images/s | peak RSS (MB) | index bytes/image |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        by = {}
        for row in found["rows"]:
            by.setdefault((row["folder_images"], row["stream"]), {})[row["load"]] = row
        for (count, stream), pair in sorted(by.items()):
            first, cached = pair.get("first", {}), pair.get("cached", {})
            index = cached.get("index_bytes_per_image")
            lines.append(f"| {count:,} | {'streamed' if stream else 'in memory'} | {first.get('load_seconds', 0):.0f} | "
                         f"{cached.get('load_seconds', 0):.0f} | {_spread([r['images_per_s'] for r in pair.values()])} | "
                         f"{cached.get('peak_rss_mb', 0):,.0f} | {f'{index:.0f}' if index else '-'} |")
        lines.append("")
    if "decode" in results:
        found = results["decode"]
        lines += [f"Decode and augment ImageNet-sized JPEGs: {found['files']} files of 500x375 at quality 90 (mean "
                  f"{found['mean_kb']:.0f} KB), random-resized crop to 224 and flip, the input pipeline alone "
                  f"(batches of 64, after two warm-up batches), on {found['cores']} cores.", "",
                  f"- Machine: {found['machine']}", f"- Versions: {found['versions']}",
                  f"- Command: `{found['command']}` ({found['date']})", "",
                  "| pipeline | images/s | images/s per core |", "| --- | ---: | ---: |"]
        for name, row in found["rows"].items():
            lines.append(f"| {name} | {_spread(row['runs'])} | "
                         f"{_spread([v / found['cores'] for v in row['runs']])} |")
        lines.append("")
        means = {name: statistics.mean(row["runs"]) for name, row in found["rows"].items()}
        peer = next((mean for name, mean in means.items() if name.startswith("torchvision")), None)
        ours = {name: mean for name, mean in means.items() if "(ours)" in name}
        if peer:
            torch = next((row.get("torch") for row in found["rows"].values() if row.get("torch")), "?")
            lines += ["Against the torchvision pipeline (torch " + torch + ", its own virtualenv): " + ", ".join(
                f"{name.replace(' (ours)', '')} {mean / peer:.2f}x" for name, mean in ours.items()) + ".", ""]
        per_core = max(ours.values()) / found["cores"]
        needed = H100_IMAGES_PER_S / per_core
        lines += [f"Cores to keep one H100 busy (an estimate, not a measurement): the TensorFlow benchmarks' AlexNet "
                  f"ran at about {P100_IMAGES_PER_S:,} images/s on one P100; scaled by the two chips' dense float32 "
                  f"throughput (H100 SXM 67 TFLOP/s, P100 10.6), an H100 would take about "
                  f"{H100_IMAGES_PER_S:,.0f} images/s. At this machine's best {per_core:.0f} images/s per core that "
                  f"is about {needed:.0f} cores of decoding (fewer on cores faster than these, and "
                  "more with mixed precision, where the H100's lead is larger).", ""]
    return "\n".join(lines + _cifar_lines())


def write():
    """Puts the section into BENCHMARKS.md: in place of the old one, or at the end; nothing else changes."""
    path = ROOT / "BENCHMARKS.md"
    head, *parts = path.read_text().rstrip("\n").split("\n## ")
    parts = [part for part in parts if not part.startswith("Data at scale\n")]
    text = "\n## ".join([head, *parts]) + "\n\n" + section(load()).rstrip("\n") + "\n"
    path.write_text(text)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    scale_parser = commands.add_parser("scale")
    scale_parser.add_argument("--sizes", type=int, nargs="+", default=[50000, 200000, 800000])
    scale_parser.add_argument("--steps", type=int, default=30)
    scale_parser.add_argument("--memory-up-to", type=int, default=200000,
                              help="decode into memory only up to this many images (decoding 800,000 takes long)")
    decode_parser = commands.add_parser("decode")
    decode_parser.add_argument("--files", type=int, default=1500)
    decode_parser.add_argument("--batches", type=int, default=12)
    decode_parser.add_argument("--workers", type=int, default=os.cpu_count())
    decode_parser.add_argument("--repeats", type=int, default=3)
    commands.add_parser("write")
    args = parser.parse_args()
    if args.command == "scale":
        scale(args.sizes, args.steps, args.memory_up_to)
    elif args.command == "decode":
        decode(args.files, args.batches, args.workers, args.repeats)
    write()


if __name__ == "__main__":
    main()
