"""Images/s of the `imagenet` recipe's training step at 227x227, and the time 90 epochs would take at that rate.

    python bench/imagenet_step.py [--backends tensorflow jax] [--repeats 3] [--steps 6] [--out BENCHMARKS.md]

The step is `alexnet train --recipe imagenet`'s: AlexNet with 1000 classes, batch 128, SGD with momentum and
weight decay, the PCA lighting noise in the model, at the speed settings `alexnet train` chooses for this
machine. Batches are synthetic uint8 227x227 crops, as the streaming pipeline hands them over: decoding and
cropping are measured apart ("Data at scale"), and on a machine with enough cores they overlap the step. Each
repeat is a fresh process; the figure is the mean and standard deviation over them. Writes the section
"ImageNet: the imagenet recipe's training step" of BENCHMARKS.md (other sections are kept).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
IMAGENET_TRAIN = 1_281_167  # ILSVRC-2012 training images
EPOCHS = 90
TITLE = "ImageNet: the imagenet recipe's training step"


def one(backend, steps, seed):
    """Measures in this process; returns a dict."""
    from alexnet.backend import load_keras, select_backend, speed_settings

    select_backend(backend)
    keras = load_keras()
    import numpy as np

    from alexnet.model import compiling
    from alexnet.model.builders import build_model
    from alexnet.settings.config import TrainConfig

    speed = speed_settings(None, None)
    keras.config.set_dtype_policy(speed["dtype_policy"])
    keras.utils.set_random_seed(seed)
    config = TrainConfig(recipe="imagenet").resolved()
    basis = ([1.2, 0.6, 0.2], np.eye(3).tolist())  # the values do not change the step's cost
    augmentation = compiling.augmentation("imagenet", seed, in_pipeline=True, pca_lighting=config.pca_lighting,
                                        colour_basis=basis)
    model = build_model("alexnet", (227, 227, 3), 1000, 227, augmentation=augmentation)
    compiling.compile_model(model, config, steps_per_epoch=IMAGENET_TRAIN // config.batch_size, jit=speed["jit"])
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (config.batch_size, 227, 227, 3), dtype=np.uint8)
    y = rng.integers(0, 1000, config.batch_size)
    for _ in range(2):  # compile, then one step at speed
        model.train_on_batch(x, y)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = (time.perf_counter() - started) / steps
    return {"backend": backend, "images_per_s": config.batch_size / seconds, "step_s": seconds,
            "batch": config.batch_size, "jit": speed["jit"], "dtype_policy": speed["dtype_policy"]}


def commit():
    """The git commit of the code measured, '-dirty' when the tree has changes."""
    def git(*words):
        done = subprocess.run(["git", "-C", str(ROOT), *words], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=None, help="(default: every one installed)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per backend (mean ± sd)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per process, after two warm-up steps")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--one", metavar="BACKEND", help=argparse.SUPPRESS)  # a child process: measure and print
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.seed)))
        return
    from run import installed_backends, machine, versions

    backends = args.backends or installed_backends()
    results = {backend: [] for backend in backends}
    for repeat in range(args.repeats):  # round-robin, so that a slow spell of the machine is shared
        for backend in backends:
            done = subprocess.run([sys.executable, __file__, "--one", backend, "--steps", str(args.steps),
                                   "--seed", str(repeat)], capture_output=True, text=True, timeout=1800,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            if done.returncode != 0:
                raise SystemExit(f"{backend} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results[backend].append(result)
            print(f"  {backend} seed {repeat}: {result['images_per_s']:.1f} images/s "
                  f"({result['step_s']:.2f} s a step of {result['batch']})", flush=True)
    lines = [f"## {TITLE}", "",
             f"`python bench/imagenet_step.py --repeats {args.repeats} --steps {args.steps}` on {machine()}; "
             f"{versions()}; code at {commit()}. Batch 128 of synthetic uint8 227x227 crops, 1000 classes, the recipe's optimizer "
             f"and PCA lighting noise, `alexnet train`'s speed settings for this machine; {args.repeats} processes "
             f"per backend, round-robin (mean ± sd), {args.steps} timed steps each after two warm-up steps; "
             "run alone on the machine (nothing else running: no tests, no helpers).", "",
             "| backend | settings | training images/s | 90 epochs of ImageNet (1,281,167 images), **estimate** |",
             "| --- | --- | ---: | ---: |"]
    for backend, found in results.items():
        rates = [r["images_per_s"] for r in found]
        mean = statistics.mean(rates)
        spread = statistics.stdev(rates) if len(rates) > 1 else 0.0
        days = EPOCHS * IMAGENET_TRAIN / mean / 86400
        lines.append(f"| {backend} | {found[0]['dtype_policy']}, XLA {'on' if found[0]['jit'] else 'off'} | "
                     f"{mean:.1f} ± {spread:.1f} | {days:,.0f} days |")
    lines += ["", "The estimate is 90 x 1,281,167 images at the measured rate, for the step alone: the decoding "
                  "of the files needs cores of its own (\"Data at scale\" measured 231-307 images/s per core, on the AVX-512 EPYC of an earlier session), "
                  "and validation adds 50,000 images an epoch. It says what the number is for: on a CPU, "
                  "ImageNet is a test that the code runs, and training it needs GPUs."]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.write_text(with_section(out.read_text() if out.exists() else "", TITLE, text))


def with_section(old, title, text):
    """`old` (a markdown file) with its '## title' section replaced by `text`, or `text` appended."""
    head, *sections = old.rstrip("\n").split("\n## ")
    sections = [text if s.split("\n", 1)[0] == title else "## " + s for s in sections]
    if text not in sections:
        sections.append(text)
    return "\n\n".join([head.rstrip("\n"), *(s.rstrip("\n") for s in sections)]) + "\n"


if __name__ == "__main__":
    main()
