"""The benchmark suite: our code against the tutorial's, side by side, on this machine.

    python bench/run.py [--data PATH] [--out BENCHMARKS.md] [--repeats 3]

Each figure comes from its own process (bench/measure.py), for every Keras
backend installed. Writes BENCHMARKS.md with the machine, the versions, the
commands and every figure as a ratio to the tutorial's, then the section
against a hand-written PyTorch loop (bench/peer.py). About 10-15 minutes on
a 2-core CPU.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURE = ROOT / "bench" / "measure.py"
TRAIN_IMAGES = 45000
RSS_BUFFERS = (1000, 2000)  # the tutorial's shuffle buffer is measured at these sizes and extrapolated


def installed_backends():
    return [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b)]


def measure(*args, repeats=1, timeout=900):
    """Runs bench/measure.py `repeats` times; returns (results, the command)."""
    command = [sys.executable, str(MEASURE), *map(str, args)]
    results = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["process_seconds"] = time.perf_counter() - started
        results.append(result)
        print(f"  {' '.join(map(str, args))}: {_short(result)}", flush=True)
    return results, "python bench/measure.py " + " ".join(map(str, args))


def _short(result):
    keys = ("images_per_s", "latency_ms", "peak_rss_mb", "dtype_policy", "jit")
    return ", ".join(f"{k}={result[k]:.4g}" if isinstance(result[k], float) else f"{k}={result[k]}"
                     for k in keys if k in result)


def summary(results, key):
    values = [r[key] for r in results]
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, spread, len(values)


def fmt(mean, spread, n, digits=1):
    return f"{mean:,.{digits}f}" + (f" ± {spread:,.{digits}f} (n={n})" if n > 1 else "")


def cpu_name():
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def instruction_sets():
    """The vector extensions that decide the speed of a CPU's kernels (AVX2, AVX-512, AMX), from /proc/cpuinfo."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags"))
    except (OSError, StopIteration):
        return "instruction sets unknown"
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
    found = [name.upper().replace("_", "-") for name in wanted if name in flags]
    return ", ".join(found) + ("" if "avx512f" in flags else ", no AVX-512")


def machine():
    cpu = cpu_name()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    from alexnet.backend import cpu_has_fast_bf16

    return (f"{cpu} ({instruction_sets()}), {os.cpu_count()} cores, {memory:.0f} GiB memory, "
            f"{'bfloat16 faster than float32' if cpu_has_fast_bf16() else 'float32 (bfloat16 not faster here)'}, "
            f"{gpus() or 'no GPU'}")


def gpus():
    """The GPUs nvidia-smi lists, as one string, or '' where there is none."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []
    return ", ".join(f"{names.count(n)}x {n}" for n in dict.fromkeys(names))


def merge(old, new):
    """BENCHMARKS.md from this suite's new text, keeping every section of the old file it does not write.

    Sections are '## ' headings. The GPU section is kept as it was unless the old one is still the
    placeholder: this suite runs on a CPU and must not erase figures measured on a GPU.
    """
    def sections(text):
        head, *rest = ("\n" + text).split("\n## ")
        return head.strip("\n"), {part.split("\n", 1)[0]: "## " + part.rstrip("\n") for part in rest}

    _, old_sections = sections(old)
    head, new_sections = sections(new)
    gpu_old = old_sections.get("GPU")
    if gpu_old and "Not measured yet" not in gpu_old:
        new_sections["GPU"] = gpu_old
    for title, text in old_sections.items():
        new_sections.setdefault(title, text)
    return "\n\n".join([head, *new_sections.values()]) + "\n"


def versions():
    found = {"python": platform.python_version()}
    for name in ("numpy", "keras", "tensorflow", "jax", "torch"):
        if importlib.util.find_spec(name):
            found[name] = __import__(name).__version__
    return ", ".join(f"{k} {v}" for k, v in found.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"))
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--repeats", type=int, default=3, help="runs of each headline figure (mean ± sd)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    data = ["--data", args.data]
    backends = installed_backends()
    started = time.perf_counter()
    print(f"Backends: {', '.join(backends)}. Preparing the data (decoded once, then cached)...")
    measure("rss", "ours", *data)  # warms the decoded-data cache so that no figure includes decoding
    rows, commands = {}, []

    def run(name, *margs, repeats=1):
        results, command = measure(*margs, *data, repeats=repeats)
        rows[name] = results
        commands.append(command.replace(f"--data {args.data}", "--data DATA"))
        return results

    print("Input pipeline, 227x227 batches of 32:")
    run("pipeline tutorial", "pipeline", "tutorial", "--shuffle-buffer", RSS_BUFFERS[0])
    for b in backends:
        run(f"pipeline {b}", "pipeline", "ours", "--backend", b)

    print("Peak memory from loading to the first training batch, 45,000 training images:")
    for buffer in RSS_BUFFERS:
        run(f"rss tutorial {buffer}", "rss", "tutorial", "--shuffle-buffer", buffer)
    for b in backends:
        run(f"rss {b}", "rss", "ours", "--backend", b)

    print("Training at 227x227, batch 32, steady state:")
    run("train tutorial", "train", "tutorial", "--steps", 8, repeats=args.repeats)
    for b in backends:
        run(f"train {b} auto", "train", "ours", "--backend", b, "--steps", 8, repeats=args.repeats if b == "tensorflow" else 1)
    switches = {"tensorflow": [("off", "off"), ("off", "on"), ("on", "off"), ("on", "on")],
                "jax": [("on", "off"), ("on", "on")], "torch": [("off", "off"), ("off", "on")]}
    for b in backends:
        for jit, mixed in switches[b]:
            run(f"train {b} jit={jit} mp={mixed}", "train", "ours", "--backend", b, "--jit", jit,
                "--mixed-precision", mixed, "--steps", 8)

    print("Inference at 227x227:")
    run("infer tutorial", "infer", "tutorial", "--steps", 8, repeats=args.repeats)
    for b in backends:
        run(f"infer {b} auto", "infer", "ours", "--backend", b, "--steps", 8, repeats=args.repeats if b == "tensorflow" else 1)
    run("infer tensorflow mp=off", "infer", "ours", "--backend", "tensorflow", "--mixed-precision", "off", "--steps", 8)

    minutes = (time.perf_counter() - started) / 60
    out = Path(args.out)
    text = report(rows, commands, backends, args, minutes)
    out.write_text(merge(out.read_text(), text) if out.exists() else text)

    print("Against a hand-written PyTorch loop (bench/peer.py):")
    import peer
    from imagenet_step import with_section

    peer_rows = peer.run_all(backends, args.repeats, peer.STEPS)
    out.write_text(with_section(out.read_text(), peer.title(),
                                peer.section(peer_rows, args.repeats, peer.STEPS, backends)))
    minutes = (time.perf_counter() - started) / 60
    print(f"Wrote {args.out} ({minutes:.1f} min)")


WHY = [
    "Why training and inference stay under 2x on this CPU: both codes run the same network, and here its",
    "arithmetic is nearly all of a step (the tutorial's CPU preprocessing of a batch of 32 costs milliseconds, the",
    "training step over a second). The tutorial's float32 step already does about 170 GFLOP/s on 2 cores (about",
    "6.8 GFLOP to train on one 227x227 image, 3x the forward pass's 1.13 G multiply-adds, at ~25 images/s), so with",
    "the same model and batch size the one large lever left is cheaper arithmetic: bfloat16 on the CPU's",
    "AVX512-BF16 units, which `alexnet train` uses by default here. XLA on the CPU is slower, and JAX's CPU",
    "convolutions are slower than oneDNN's. The memory target holds on every backend. On GPUs the in-model",
    "preprocessing, mixed precision and XLA matter far more; see the GPU section.",
]
GPU = [
    "## GPU", "",
    "Not measured yet: no GPU machine was lent to the sessions so far. `bench/gpu_check.sh` is the prepared",
    "command (the fast recipe on the full training split, JAX backend, per-epoch seconds, images/s, validation",
    "and test accuracy); its figures go here, with the device named, once it has run.",
]


def report(rows, commands, backends, args, minutes):
    tutorial_pipeline = summary(rows["pipeline tutorial"], "images_per_s")
    tutorial_train = summary(rows["train tutorial"], "images_per_s")
    tutorial_infer = summary(rows["infer tutorial"], "images_per_s")
    tutorial_latency = summary(rows["infer tutorial"], "latency_ms")
    small, large = (rows[f"rss tutorial {b}"][0]["peak_rss_mb"] for b in RSS_BUFFERS)
    per_image = (large - small) / (RSS_BUFFERS[1] - RSS_BUFFERS[0])
    tutorial_rss = small + per_image * (TRAIN_IMAGES - RSS_BUFFERS[0])

    lines = [
        "# Benchmarks", "",
        "Our code against the tutorial's (transcribed faithfully in `bench/tutorial.py`), same machine, same run.",
        "",
        f"- Machine: {machine()}",
        f"- Versions: {versions()}",
        f"- Date: {datetime.date.today().isoformat()}; the whole suite took {minutes:.1f} min",
        f"- Command: `python bench/run.py --repeats {args.repeats}` (data: the CIFAR-10 JPEG copy; "
        "`--data` takes any `alexnet --data` value)",
        "- Figures with ± are mean ± standard deviation over separate processes; the others are one run.",
        "- Ratios are ours / the tutorial's (for memory: the tutorial's / ours).", "",
        "## Input pipeline: 227x227 batches of 32", "",
        "The tutorial standardizes and resizes every image on the CPU inside `tf.data`; ours moves uint8 32x32",
        "images and the model's own first layers standardize and resize them (on the accelerator when there is one).",
        "", "| code | backend | images/s | ratio |", "| --- | --- | ---: | ---: |",
        f"| tutorial | tensorflow | {fmt(*tutorial_pipeline, 0)} | 1.00 |",
    ]
    for b in backends:
        mean = summary(rows[f"pipeline {b}"], "images_per_s")
        lines.append(f"| ours | {b} | {fmt(*mean, 0)} | {mean[0] / tutorial_pipeline[0]:.2f} |")
    lines += [
        "", "## Peak memory (RSS) from loading CIFAR-10 to the first training batch, 45,000 training images", "",
        "The tutorial's shuffle buffer holds every preprocessed 227x227 float image (45,000 x 618 KB); that does",
        f"not fit this machine, so its peak was measured with buffers of {RSS_BUFFERS[0]:,} and {RSS_BUFFERS[1]:,} "
        f"images ({small:,.0f} and {large:,.0f} MB: {per_image * 1024:,.0f} KB an image) and extrapolated linearly "
        f"to 45,000. Ours is measured on the full split.",
        "", "| code | backend | peak RSS (MB) | tutorial / ours |", "| --- | --- | ---: | ---: |",
        f"| tutorial (extrapolated) | tensorflow | {tutorial_rss:,.0f} | 1.0 |",
    ]
    for b in backends:
        peak = rows[f"rss {b}"][0]["peak_rss_mb"]
        lines.append(f"| ours | {b} | {peak:,.0f} | {tutorial_rss / peak:.1f} |")
    lines += [
        "", "## Training at 227x227, batch 32, real images (steady state)", "",
        "Images per second over 8 `train_on_batch` steps after 2 warm-up steps, the input pipeline included.",
        "`auto` is what `alexnet train` chooses on this machine.",
        "", "| code | backend | XLA | dtype policy | images/s | ratio |", "| --- | --- | --- | --- | ---: | ---: |",
        f"| tutorial | tensorflow | off | float32 | {fmt(*tutorial_train)} | 1.00 |",
    ]
    for name, results in rows.items():
        if name.startswith("train ") and name != "train tutorial":
            mean = summary(results, "images_per_s")
            backend, label = name.split()[1], " (auto)" if name.endswith("auto") else ""
            lines.append(f"| ours{label} | {backend} | {'on' if results[0]['jit'] else 'off'} | "
                         f"{results[0]['dtype_policy']} | {fmt(*mean)} | {mean[0] / tutorial_train[0]:.2f} |")
    lines += [
        "", "## Inference at 227x227", "",
        "Throughput: `predict_on_batch` on batches of 32 raw images (the tutorial's preprocessing included for its",
        "code). Latency: median of 10 calls with one image.",
        "", "| code | backend | dtype policy | images/s | ratio | latency, 1 image (ms) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
        f"| tutorial | tensorflow | float32 | {fmt(*tutorial_infer)} | 1.00 | {fmt(*tutorial_latency)} |",
    ]
    for name, results in rows.items():
        if name.startswith("infer ") and name != "infer tutorial":
            mean, latency = summary(results, "images_per_s"), summary(results, "latency_ms")
            lines.append(f"| ours | {name.split()[1]} | {results[0]['dtype_policy']} | {fmt(*mean)} | "
                         f"{mean[0] / tutorial_infer[0]:.2f} | {fmt(*latency)} |")
    train_ratio = summary(rows["train tensorflow auto"], "images_per_s")[0] / tutorial_train[0]
    infer_ratio = summary(rows["infer tensorflow auto"], "images_per_s")[0] / tutorial_infer[0]
    memory_ratio = tutorial_rss / rows["rss tensorflow"][0]["peak_rss_mb"]
    lines += [
        "", "## Targets on this CPU (TensorFlow backend, defaults)", "",
        "| target | measured | met |", "| --- | --- | --- |",
        f"| training >= 2x the tutorial's images/s | {train_ratio:.2f}x | {'yes' if train_ratio >= 2 else 'no'} |",
        f"| inference >= 2x | {infer_ratio:.2f}x | {'yes' if infer_ratio >= 2 else 'no'} |",
        f"| peak memory <= 1/20 of the tutorial's | 1/{memory_ratio:.0f} | {'yes' if memory_ratio >= 20 else 'no'} |",
        "", *WHY, "", *GPU, "", "Commands (each one process; DATA is the `--data` above):", "", "```",
        *dict.fromkeys(commands), "```", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
