"""Our training step against a hand-written PyTorch loop for the same network, and the machine's matmul limit.

    python bench/peer.py [--repeats 3] [--steps 6] [--backends tensorflow torch jax] [--out BENCHMARKS.md]

A user who weighs this package against writing the loop themselves compares it with the loop below
(`TorchAlexNet`, `torch_step`): eager PyTorch, `channels_last`, `torch.optim.SGD` with Nesterov momentum and
weight decay, `F.cross_entropy(label_smoothing=...)`, and the same work inside the network as ours: uint8
32x32 images in, per-image standardization, random shifts of up to 1/8 and flips, a bilinear resize, AlexNet
with batch normalization. Ours is `alexnet train --recipe cpu`'s step (`train_on_batch` of the model and
optimizer that `alexnet train` builds, at the speed settings it chooses for this machine) on every Keras
backend installed. The limit is the float32 GFLOP/s of a 2048x2048 matmul, with TensorFlow and with torch.

Both steps see the same synthetic uint8 batches, at 67 px / batch 256 (the cpu recipe) and at 227 px /
batch 32 (the tutorial's size). Every figure is its own process; processes run round-robin over seeds,
`--repeats` of each (mean ± sd). Run it alone on the machine. Writes the section "Against a hand-written
PyTorch loop" of BENCHMARKS.md (other sections are kept); `bench/run.py` runs it too.
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
TITLE = "Against a hand-written PyTorch loop"
SETTINGS = ((67, 256), (227, 32))  # (image side, batch): the cpu recipe's, and the tutorial's
STORED = 32  # CIFAR-10's side: both steps take the stored uint8 images and resize them in the network
CLASSES = 10
MATMUL = 2048
STEPS = 6  # timed steps per process


def training_flop(size, classes=CLASSES):
    """FLOP of one training image through AlexNet at `size`: 3x the forward pass's 2 x multiply-adds.

    Convolutions and dense layers only (normalization, pooling and the optimizer are a few percent).
    """
    from alexnet.model.architecture import feature_map_size

    side = lambda s, k, stride: (s - k) // stride + 1  # noqa: E731 (a valid convolution or pooling)
    s1 = side(size, 11, 4)
    s2 = side(s1, 3, 2)
    s3 = side(s2, 3, 2)
    macs = s1 * s1 * 11 * 11 * 3 * 96 + s2 * s2 * 5 * 5 * 96 * 256
    macs += s3 * s3 * 9 * (256 * 384 + 384 * 384 + 384 * 256)
    macs += feature_map_size(size) ** 2 * 256 * 4096 + 4096 * 4096 + 4096 * classes
    return 3 * 2 * macs


def batches(size_batch, seed, count=4):
    """`count` synthetic (uint8 images, labels) batches of CIFAR-10's shape."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (size_batch, STORED, STORED, 3), dtype=np.uint8),
             rng.integers(0, CLASSES, size_batch)) for _ in range(count)]


def timed(step, data, steps):
    """Seconds per step over `steps` steps after two warm-up steps."""
    for i in range(2):
        step(*data[i % len(data)])
    started = time.perf_counter()
    for i in range(steps):
        step(*data[i % len(data)])
    return (time.perf_counter() - started) / steps


# ---- the hand-written PyTorch loop, as a PyTorch user writes it --------------------------------------------

def torch_model(size, classes=CLASSES):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from alexnet.model.architecture import feature_map_size

    class TorchAlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            def block(cin, cout, kernel, stride, padding, pool):
                layers = [nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU(inplace=True), nn.BatchNorm2d(cout)]
                return layers + [nn.MaxPool2d(3, 2)] * pool
            self.features = nn.Sequential(*block(3, 96, 11, 4, 0, True), *block(96, 256, 5, 1, 2, True),
                                          *block(256, 384, 3, 1, 1, False), *block(384, 384, 3, 1, 1, False),
                                          *block(384, 256, 3, 1, 1, True))
            side = feature_map_size(size)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(256 * side * side, 4096), nn.ReLU(inplace=True),
                                            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                                            nn.Dropout(0.5), nn.Linear(4096, classes))

        def forward(self, images):  # uint8 (B, H, W, 3)
            x = images.permute(0, 3, 1, 2).float()
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp_min(1 / x[0].numel() ** 0.5)
            x = (x - mean) / std
            if self.training:  # random shifts of up to 1/8 of the side (zero fill), then flips
                b, _, h, w = x.shape
                pad = h // 8
                padded = F.pad(x, (pad, pad, pad, pad))
                dy, dx = torch.randint(0, 2 * pad + 1, (2, b, 1))
                rows, cols = dy + torch.arange(h), dx + torch.arange(w)
                x = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
                x = torch.where(torch.rand(b, 1, 1, 1) < 0.5, x.flip(3), x)
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            x = x.contiguous(memory_format=torch.channels_last)
            return self.classifier(self.features(x))

    return TorchAlexNet().to(memory_format=torch.channels_last)


def torch_step_function(size, batch):
    import torch
    import torch.nn.functional as F

    model = torch_model(size)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05 * batch / 256, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)

    def step(images, labels):
        images, labels = torch.from_numpy(images), torch.from_numpy(labels)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, {"threads": torch.get_num_threads(), "version": torch.__version__}


# ---- ours ----------------------------------------------------------------------------------------------------

def our_step_function(backend, size, batch, seed, jit=None, mixed_precision=None):
    """`alexnet train --recipe cpu`'s step; jit and mixed_precision None: as `alexnet train` chooses them.

    On torch, jit=True is `torch.compile` through Keras's `jit_compile` (a lever measured here; `alexnet train`
    does not use it: see `speed_settings`).
    """
    from alexnet.backend import load_keras, select_backend, speed_settings

    select_backend(backend)
    keras = load_keras()
    import numpy as np

    from alexnet.model import compiling
    from alexnet.model.builders import build_model
    from alexnet.settings.config import TrainConfig
    from alexnet.training.trainer import make_deterministic

    speed = speed_settings(jit if backend != "torch" else None, mixed_precision)
    if backend == "torch" and jit:
        speed["jit"] = True  # Keras's torch trainer wraps the step in torch.compile
    keras.config.set_dtype_policy(speed["dtype_policy"])
    # As `alexnet train` does: op determinism on TensorFlow's CPU, not with XLA (and not for the lever without it).
    make_deterministic(seed, speed["device"], speed["jit"] or bool(os.environ.get("ALEXNET_BENCH_NONDETERMINISTIC")))
    config = TrainConfig(recipe="cpu", batch_size=batch, image_size=size).resolved()
    model = build_model("alexnet", (STORED, STORED, 3), CLASSES, size,
                        augmentation=compiling.augmentation("cpu", seed))
    compiling.compile_model(model, config, steps_per_epoch=45000 // batch, jit=speed["jit"])
    eye = np.eye(CLASSES, dtype="float32")  # the recipe's label smoothing takes one-hot labels

    def step(images, labels):
        return model.train_on_batch(images, eye[labels])

    # What Keras compiled, not what was asked: Keras turns XLA off by itself for some models and settings.
    return step, {"jit": bool(model.jit_compile), "dtype_policy": speed["dtype_policy"], "onednn": speed.get("onednn")}


def matmul_gflops(engine, repeats=20):
    """float32 GFLOP/s of a MATMUL x MATMUL matmul: the machine's arithmetic limit as the engine reaches it."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((MATMUL, MATMUL), dtype=np.float32)
    if engine == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        x = tf.constant(a)
        product = tf.function(lambda m: tf.linalg.matmul(m, m))
        run = lambda: product(x).numpy()  # noqa: E731
    else:
        import torch

        x = torch.from_numpy(a)
        run = lambda: torch.mm(x, x)  # noqa: E731
    run()
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return 2 * MATMUL ** 3 / ((time.perf_counter() - started) / repeats) / 1e9


def one(what, size, batch, steps, seed, jit, mixed_precision=None):
    """One measurement in this process: `what` is matmul-ENGINE, torch-loop or ours-BACKEND."""
    if what.startswith("matmul-"):
        return {"gflops": matmul_gflops(what.split("-", 1)[1])}
    if what == "torch-loop":
        import torch

        torch.manual_seed(seed)
        step, extra = torch_step_function(size, batch)
    else:
        step, extra = our_step_function(what.split("-", 1)[1], size, batch, seed, jit, mixed_precision)
    seconds = timed(step, batches(batch, seed), steps)
    return {"images_per_s": batch / seconds, "step_s": seconds, **extra}


def measure(what, size, batch, steps, seed, jit="auto", precision="auto", env=None):
    done = subprocess.run([sys.executable, __file__, "--one", what, "--size", str(size), "--batch", str(batch),
                           "--steps", str(steps), "--seed", str(seed), "--jit", jit, "--precision", precision],
                          capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"{what} at {size} px failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mean_sd(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_all(backends, repeats, steps, settings=SETTINGS, extra_jit=()):
    """{(what, size, batch): [results]} over `repeats` seeds, round-robin; prints each figure."""
    engines = [e for e in ("tensorflow", "torch") if e in backends or e == "torch"]
    rows = {}
    for seed in range(repeats):
        for engine in engines:
            result = measure(f"matmul-{engine}", 0, 0, 0, seed)
            rows.setdefault((f"matmul-{engine}", 0, 0), []).append(result)
            print(f"  matmul {engine} seed {seed}: {result['gflops']:.1f} GFLOP/s", flush=True)
        for size, batch in settings:
            whats = [("torch-loop", "auto")] + [(f"ours-{b}", "auto") for b in backends]
            whats += [(f"ours-{b}", "on") for b in extra_jit]
            for what, jit in whats:
                result = measure(what, size, batch, steps, seed, jit)
                key = (what + ("-jit" if jit == "on" else ""), size, batch)
                rows.setdefault(key, []).append(result)
                print(f"  {key[0]} {size} px batch {batch} seed {seed}: {result['images_per_s']:.1f} images/s",
                      flush=True)
    return rows


def title():
    """The section's title, one section a kind of CPU, so that a run on one kind keeps the others' figures."""
    from run import instruction_sets

    from alexnet.backend import cpu_has_fast_bf16

    if "AVX512F" not in instruction_sets():
        return f"{TITLE}, CPUs without AVX-512"
    return f"{TITLE}, CPUs with AVX-512" + (" and fast bfloat16" if cpu_has_fast_bf16() else "")


def section(rows, repeats, steps, backends):
    from imagenet_step import commit
    from run import machine, versions

    limit = max(mean_sd([r["gflops"] for r in found])[0] for (what, *_), found in rows.items()
                if what.startswith("matmul-"))
    limits = ", ".join(f"{what.split('-', 1)[1]} {fmt(*mean_sd([r['gflops'] for r in found]))}"
                       for (what, *_), found in rows.items() if what.startswith("matmul-"))
    lines = [f"## {title()}", "",
             f"`python bench/peer.py --repeats {repeats} --steps {steps}` on {machine()}; {versions()}; code at "
             f"{commit()}. Run alone on the machine; {repeats} processes of each figure, round-robin over seeds "
             f"(mean ± sd), {steps} timed steps each after two warm-up steps, synthetic uint8 32x32 batches.", "",
             "- The peer (`TorchAlexNet` and `torch_step_function` in `bench/peer.py`) is the loop a PyTorch user "
             "writes: eager, `channels_last`, `torch.optim.SGD` (Nesterov, weight decay), "
             "`F.cross_entropy(label_smoothing=0.1)`, with the same in-network standardization, shifts, flips and "
             "resize as ours.",
             "- Ours: the `cpu` recipe's model and optimizer, `train_on_batch`, at the speed settings "
             "`alexnet train` chooses here (the `settings` column); `+ XLA` rows force `--jit on`.",
             f"- The limit: float32 GFLOP/s of a {MATMUL}x{MATMUL} matmul ({limits}); the best of them is the "
             f"limit, {limit:.1f} GFLOP/s. A step's GFLOP/s is images/s x the convolutions' and dense layers' "
             "FLOP for one training image (3 x 2 x multiply-adds)."]
    lower = sorted({r["dtype_policy"] for (what, *_), found in rows.items() if what.startswith("ours-")
                    for r in found} - {"float32"})
    if lower:  # where `alexnet train` chooses bfloat16 ("dtype on CPUs"); the loop a PyTorch user writes is float32
        lines.append(f"- Here `alexnet train` chooses {', '.join(lower)}, while the loop a PyTorch user writes stays "
                     "float32: that is the comparison a user makes. The limit is float32's, so a lower-precision "
                     "step can pass 100% of it.")
    lines.append("")
    for size, batch in dict.fromkeys((s, b) for (what, s, b) in rows if s):
        peer = mean_sd([r["images_per_s"] for r in rows[("torch-loop", size, batch)]])
        flop = training_flop(size)
        lines += [f"### {size} px, batch {batch} ({flop / 1e9:.2f} GFLOP a training image)", "",
                  "| step | settings | training images/s | / the PyTorch loop | GFLOP/s | of the limit |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        for (what, s, b), found in rows.items():
            if (s, b) != (size, batch):
                continue
            rate = mean_sd([r["images_per_s"] for r in found])
            if what == "torch-loop":
                name, settings = "hand-written PyTorch loop", f"eager, float32, {found[0]['threads']} threads"
            else:
                name = f"ours, {what.split('-')[1]} backend" + (" + XLA" if what.endswith("-jit") else "")
                settings = f"{found[0]['dtype_policy']}, XLA {'on' if found[0]['jit'] else 'off'}"
                if found[0].get("onednn") is not None:
                    settings += f", oneDNN {'on' if found[0]['onednn'] else 'off'}"
            gflops = rate[0] * flop / 1e9
            lines.append(f"| {name} | {settings} | {fmt(*rate)} | {rate[0] / peer[0]:.2f} | {gflops:.1f} | "
                         f"{gflops / limit:.0%} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def fmt(mean, spread):
    return f"{mean:,.1f} ± {spread:,.1f}"


# ---- levers: what else was tried on the default step --------------------------------------------------------

# (name, backend, jit, precision, environment): each a change of one setting from what `alexnet train` runs.
LEVERS = (
    ("default (as `alexnet train` runs it)", "tensorflow", "auto", "auto", {}),
    ("TensorFlow inter-op threads 1 (`TF_NUM_INTEROP_THREADS=1`)", "tensorflow", "auto", "auto",
     {"TF_NUM_INTEROP_THREADS": "1"}),
    ("TensorFlow intra-op threads 1, inter-op 2", "tensorflow", "auto", "auto",
     {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2"}),
    ("oneDNN off (`TF_ENABLE_ONEDNN_OPTS=0`)", "tensorflow", "auto", "auto", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    ("oneDNN runs on the calling thread (`TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD=1`)", "tensorflow", "auto", "auto",
     {"TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD": "1"}),
    ("oneDNN with the system allocator (`TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1`)", "tensorflow", "auto", "auto",
     {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"}),
    ("op determinism off (as with `--jit`)", "tensorflow", "auto", "auto", {"ALEXNET_BENCH_NONDETERMINISTIC": "1"}),
    ("XLA (`--jit`) with oneDNN, op determinism off", "tensorflow", "on", "auto", {}),
    ("float32 (`--no-mixed-precision`)", "tensorflow", "auto", "float32", {}),
    ("Keras on torch, as `alexnet train --backend torch` runs it", "torch", "auto", "auto", {}),
    ("Keras on torch + `torch.compile` (Keras's `jit_compile`)", "torch", "on", "auto", {}),
)


def levers_title():
    return title().replace(TITLE, "Levers tried on the step")


def run_levers(backends, repeats, steps, size=67, batch=256):
    """{lever name: [results]} and the loop's, at the cpu recipe's size, round-robin over `repeats` seeds."""
    rows = {}
    levers = [lever for lever in LEVERS if lever[1] in backends]
    for seed in range(repeats):
        rows.setdefault("torch-loop", []).append(measure("torch-loop", size, batch, steps, seed))
        print(f"  torch-loop seed {seed}: {rows['torch-loop'][-1]['images_per_s']:.1f} images/s", flush=True)
        for name, backend, jit, precision, env in levers:
            try:
                result = measure(f"ours-{backend}", size, batch, steps, seed, jit, precision, env)
            except SystemExit as failure:  # a lever that does not run here (torch.compile without a compiler)
                result = {"failed": str(failure).splitlines()[-1][:200]}
            rows.setdefault(name, []).append(result)
            print(f"  {name} seed {seed}: {result.get('images_per_s', 0):.1f} images/s", flush=True)
    return rows


def levers_section(rows, repeats, steps, size=67, batch=256):
    from imagenet_step import commit
    from run import machine, versions

    loop = mean_sd([r["images_per_s"] for r in rows["torch-loop"]])
    default = mean_sd([r["images_per_s"] for r in rows[LEVERS[0][0]]])
    lines = [f"## {levers_title()}", "",
             f"`python bench/peer.py --levers --repeats {repeats} --steps {steps}` on {machine()}; {versions()}; "
             f"code at {commit()}. The `cpu` recipe's step at {size} px, batch {batch}, as in the section above, "
             f"with one setting changed a row; {repeats} processes each, round-robin (mean ± sd), in one run beside "
             f"the hand-written PyTorch loop ({fmt(*loop)} images/s here).", "",
             "| lever | settings | training images/s | / the default | / the PyTorch loop |",
             "| --- | --- | ---: | ---: | ---: |"]
    for name, *_ in LEVERS:
        found = rows.get(name)
        if not found:
            continue
        if any("failed" in r for r in found):
            lines.append(f"| {name} | - | failed: {next(r['failed'] for r in found if 'failed' in r)} | - | - |")
            continue
        rate = mean_sd([r["images_per_s"] for r in found])
        settings = f"{found[0]['dtype_policy']}, XLA {'on' if found[0]['jit'] else 'off'}"
        if found[0].get("onednn") is not None:
            settings += f", oneDNN {'on' if found[0]['onednn'] else 'off'}"
        lines.append(f"| {name} | {settings} | {fmt(*rate)} | {rate[0] / default[0]:.2f} | "
                     f"{rate[0] / loop[0]:.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=None, help="Keras backends (default: every one installed)")
    parser.add_argument("--repeats", type=int, default=3, help="processes of each figure (mean ± sd)")
    parser.add_argument("--steps", type=int, default=STEPS, help="timed steps per process, after two warm-up steps")
    parser.add_argument("--xla", nargs="*", default=[], metavar="BACKEND",
                        help="also measure ours on these backends with --jit on")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: measure and print one JSON line
    parser.add_argument("--size", type=int, default=67, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--jit", default="auto", choices=["auto", "on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed"], help=argparse.SUPPRESS)
    parser.add_argument("--levers", action="store_true",
                        help="instead: the levers tried on the default step at 67 px (thread pools, oneDNN, XLA, "
                             "precision, torch.compile), written as their own section")
    args = parser.parse_args()
    if args.one:
        jit = None if args.jit == "auto" else args.jit == "on"
        mixed = None if args.precision == "auto" else args.precision == "mixed"
        print(json.dumps(one(args.one, args.size, args.batch, args.steps, args.seed, jit, mixed)))
        return
    from imagenet_step import with_section
    from run import installed_backends

    backends = args.backends or installed_backends()
    if args.levers:
        rows = run_levers(backends, args.repeats, args.steps)
        text, heading = levers_section(rows, args.repeats, args.steps), levers_title()
    else:
        rows = run_all(backends, args.repeats, args.steps, extra_jit=args.xla)
        text, heading = section(rows, args.repeats, args.steps, backends), title()
    print(text)
    out = Path(args.out)
    out.write_text(with_section(out.read_text() if out.exists() else "", heading, text))


if __name__ == "__main__":
    main()
