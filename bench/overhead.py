"""What a training run spends outside its steps, and how often it compiles: issue 33's CPU measurements.

    python bench/overhead.py overhead [--seed S] [--flags ...]   # one run, one JSON line
    python bench/overhead.py compiles --backend jax|tensorflow   # compiles per step function, one JSON line
    python bench/overhead.py xla --jit on|off [--seed S]          # the cpu recipe's step on TensorFlow, one JSON line
    python bench/overhead.py all [--code DIR] [--seeds 3]        # overhead over seeds, each in its own process
    python bench/overhead.py measure --label L [--code DIR]      # all of the above -> bench/results/overhead.json
    python bench/overhead.py write                               # BENCHMARKS.md's section, from the results file

Run it alone on the machine (no tests, no other benchmarks beside it).

Overhead (the issue's definition): 1 - (images trained x the pure step time) / the wall-clock time of the
training, the `cpu` recipe on 4,096 CIFAR-10 images for 5 epochs, with its validation and checkpoints. The
wall-clock runs from fit's start to its end (compiling, validation, logs and checkpoints included; the start-up
and the test report, the same whatever the run does, are left out); the pure step time is the median of the
run's own training steps, each timed from its start to its end (on TensorFlow, callbacks run in step with
the device), measured at the same time as the wall-clock, so that this shared machine's slow and fast
spells fall on both alike. `--code DIR` runs another
checkout (e.g. a `git worktree` of an older commit) to measure "before".

XLA: the `cpu` recipe's model (67 px, batch 256, its augmentation in the model) compiled as `alexnet train`
compiles it, with and without XLA, its training step timed over an in-memory batch; Keras's own flag
(`model.jit_compile`, which Keras turns off when it cannot compile) and the line `alexnet train --jit` starts with.

Compiles: a 3-epoch run with ragged sizes (1,000 training images at batch 128, 200 validation, 300 test). On
JAX the compiles JAX logs (JAX_LOG_COMPILES); on TensorFlow with --jit the XLA modules dumped
(--xla_dump_to), counted per function.
"""

import argparse
import atexit
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
RESULTS = ROOT / "bench" / "results" / "overhead.json"
TITLE = "Overhead, compiles and XLA: what a run spends outside its steps"
RAGGED_FLAGS = ["--recipe", "cpu", "--epochs", "3", "--limit-train", "1000", "--val-size", "200", "--limit-test",
                "300", "--batch-size", "128"]


def _scratch(prefix):
    """A temporary folder, removed when this process ends (each run writes hundreds of MB)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def overhead(args, extra):
    """One run of the cpu recipe; its fit's wall-clock, and the pure step time of its model."""
    sys.path.insert(0, args.code)
    import alexnet
    from alexnet.training import trainer

    fits, steps = [], []
    make_callbacks = trainer.fit_callbacks

    def timed_callbacks(*a, **k):
        import keras

        class FitClock(keras.callbacks.Callback):  # TensorFlow: callbacks run in step, so a step's end is real
            def on_train_begin(self, logs=None):
                fits.append([time.perf_counter(), None])

            def on_train_batch_begin(self, batch, logs=None):
                self.began = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                steps.append(time.perf_counter() - self.began)

            def on_train_end(self, logs=None):
                fits[-1][1] = time.perf_counter()

        return [FitClock(), *make_callbacks(*a, **k)]

    trainer.fit_callbacks = timed_callbacks
    run_dir = _scratch("overhead-") / "run"
    started = time.perf_counter()
    config = alexnet.TrainConfig.from_flags({"data": str(DATA), "recipe": "cpu", "limit_train": 4096, "epochs": 5,
                                            "seed": args.seed, "run_dir": str(run_dir), **json.loads(extra or "{}")})
    run = alexnet.train(config)
    command = time.perf_counter() - started
    wall = sum(end - begin for begin, end in fits)
    from alexnet.runs import RunFolder

    folder = RunFolder(run.run_dir)
    stored = folder.read_config()
    images, batch = stored["data"]["images_per_epoch"] * 5, stored["settings"]["batch_size"]
    step = statistics.median(steps)  # the step as it ran in this run, its compile and outliers aside
    checkpoints = sorted(p.name for p in folder.checkpoint_dir.glob("*.keras"))
    return {"seed": args.seed, "images": images, "fit_s": wall, "command_s": command, "step_s": step,
            "overhead": 1 - images / batch * step / wall, "checkpoints_left": checkpoints,
            "history_s": [round(row["seconds"], 2) for row in folder.read_history()]}


def compiles(args):
    """Compiles per step function over a ragged 3-epoch run (one JSON line)."""
    run_dir = _scratch("compiles-") / "run"
    env = {**os.environ, "PYTHONPATH": args.code}
    command = [sys.executable, "-m", "alexnet", "--debug", "train", "--data", str(DATA), "--backend", args.backend,
               *RAGGED_FLAGS, "--run-dir", str(run_dir)]
    if args.backend == "jax":
        env["JAX_LOG_COMPILES"] = "1"
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=args.code)  # -m: cwd first
        found = re.findall(r"Compiling jit\((\w+_step)", result.stdout + result.stderr)
    else:
        dump = _scratch("xla-dump-")
        env["XLA_FLAGS"] = f"--xla_dump_to={dump}"
        result = subprocess.run(command + ["--jit"], capture_output=True, text=True, env=env, cwd=args.code)
        # One numbered module per XLA compile. On TensorFlow, Keras's train, test and predict steps are all
        # functions named one_step_on_data (distinct trace ids): compiled in that order in this run.
        modules = sorted({m.groups() for m in (re.match(r"module_(\d+)\.a_inference_one_step_on_data_(\d+)", p.name)
                                               for p in dump.iterdir()) if m})
        functions = list(dict.fromkeys(function for _, function in modules))  # in the order first compiled
        found = [f"step function {functions.index(function) + 1}" for _, function in modules]
        said = result.stdout + result.stderr
        xla_on = "XLA on" in said and "XLA is off" not in said
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    counts = {name: found.count(name) for name in sorted(set(found))}
    line = {"backend": args.backend, "compiles": counts}
    if args.backend != "jax":
        line["xla"] = xla_on
    return line


def xla(args):
    """The cpu recipe's training step on TensorFlow with or without XLA (one JSON line)."""
    sys.path.insert(0, args.code)
    from alexnet.backend import load_keras, speed_settings

    keras = load_keras()
    import numpy as np

    from alexnet.model import compiling
    from alexnet.model.builders import build_model
    from alexnet.settings.config import TrainConfig

    jit = args.jit == "on"
    keras.utils.set_random_seed(args.seed)
    settings = speed_settings(jit=jit)
    keras.config.set_dtype_policy(settings["dtype_policy"])
    config = TrainConfig(recipe="cpu").resolved()
    model = build_model("alexnet", input_shape=(32, 32, 3), num_classes=10, image_size=config.image_size,
                        augmentation=compiling.augmentation("cpu", args.seed))
    compiling.compile_model(model, config, steps_per_epoch=100, jit=jit)
    rng = np.random.default_rng(args.seed)
    x = rng.integers(0, 256, (config.batch_size, 32, 32, 3), dtype=np.uint8)
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, config.batch_size)]
    model.fit(np.concatenate([x] * 2), np.concatenate([y] * 2), batch_size=config.batch_size, epochs=1,
              verbose=0)  # compiles, and a step after
    seconds, repeats = [], 3
    for _ in range(3):  # the fastest block: this shared machine's noise only ever adds time
        started = time.perf_counter()
        model.fit(np.concatenate([x] * repeats), np.concatenate([y] * repeats), batch_size=config.batch_size,
                  epochs=1, verbose=0, shuffle=False)
        seconds.append((time.perf_counter() - started) / repeats)
    seconds = min(seconds)
    return {"jit_asked": jit, "keras_jit_compile": model.jit_compile, "dtype_policy": settings["dtype_policy"],
            "batch": config.batch_size, "step_s": seconds, "images_per_s": config.batch_size / seconds}


def start_line(code):
    """The line `alexnet train --recipe cpu --jit` opens with that says whether XLA is on, and any XLA note."""
    run_dir = _scratch("xla-") / "run"
    result = subprocess.run([sys.executable, "-m", "alexnet", "train", "--data", str(DATA), "--recipe", "cpu", "--jit",
                             "--epochs", "1", "--limit-train", "512", "--limit-test", "100", "--run-dir", str(run_dir)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": code}, cwd=code)
    return [line for line in (result.stdout + result.stderr).splitlines() if "XLA" in line]


def _child(argv, code):
    result = subprocess.run([sys.executable, __file__, *argv, "--code", code], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _commit(code):
    result = subprocess.run(["git", "-C", code, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return result.stdout.strip()[:70]


def measure(args):
    """Every measurement of one checkout, stored under `--label` in the results file."""
    sys.path.insert(0, str(ROOT / "bench"))
    from run import machine, versions

    seeds = range(args.seeds)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    entry = results.get(args.label, {}) if args.only_overhead else {}
    entry.update({"code": _commit(args.code), "machine": machine(), "versions": versions(), "settings": args.settings,
                  "overhead": [_child(["overhead", "--seed", str(seed), "--settings", args.settings], args.code)
                               for seed in seeds]})
    if not args.settings and not args.only_overhead:  # the defaults: also the compiles and XLA
        entry.update(
            compiles=[_child(["compiles", "--backend", backend], args.code) for backend in ("jax", "tensorflow")],
            xla=[_child(["xla", "--jit", jit, "--seed", str(seed)], args.code) for seed in seeds
                 for jit in ("off", "on")],
            xla_start_line=start_line(args.code))
    results[args.label] = entry
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(entry, indent=1))


def _mean_sd(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def write(args):
    """BENCHMARKS.md's section from the results file."""
    sys.path.insert(0, str(ROOT / "bench"))
    from imagenet_step import with_section

    results = json.loads(RESULTS.read_text())
    first = next(iter(results.values()))
    lines = [f"## {TITLE}", "",
             f"`python bench/overhead.py measure --label L [--code DIR]`, then `write`; each checkout alone on "
             f"{first['machine']}; {first['versions']}. Mean ± sd over {len(first['overhead'])} seeds.", "",
             "**Compiles** per step function over a ragged 3-epoch run (`--recipe cpu --limit-train 1000 --val-size "
             "200 --limit-test 300 --batch-size 128`): JAX's own log (JAX_LOG_COMPILES), and on TensorFlow with "
             "`--jit` the XLA modules dumped (`--xla_dump_to`).", "",
             "| code | JAX: train / test / predict | TensorFlow --jit: XLA compiles of each step function, train / test / predict |", "| --- | --- | --- |"]
    for label, entry in results.items():
        if "compiles" not in entry:
            continue
        cells = []
        for line in entry["compiles"]:
            counts = line["compiles"]
            if line["backend"] == "jax":
                cells.append(" / ".join(str(counts.get(f"{name}_step", 0)) for name in ("train", "test", "predict")))
            else:
                cells.append(" / ".join(str(count) for count in counts.values()) if line["xla"] and counts else
                             "no XLA: Keras compiled the model without it")
        lines.append(f"| {label}: {entry['code']} | {cells[0]} | {cells[1]} |")
    lines += ["", "**Overhead**: 1 - (images trained x the pure step time) / the fit's wall-clock, `--recipe cpu "
              "--limit-train 4096 --epochs 5` (16 steps an epoch of 256 at 67 px, 455 validation images), TensorFlow, "
              "the defaults (checkpoints included).", "",
              "| code | fit wall-clock (s) | pure step (s) | images trained | overhead | of it: outside the epochs "
              "(checkpoints) | of it: the first epoch's extra (compiling) | checkpoints left |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, entry in results.items():
        rows = entry["overhead"]
        wall, step, share = (_mean_sd([row[key] for row in rows]) for key in ("fit_s", "step_s", "overhead"))
        # history.csv's seconds: each epoch, validation included, until EpochLog; the checkpoint comes after it.
        outside = _mean_sd([(row["fit_s"] - sum(row["history_s"])) / row["fit_s"] for row in rows])
        first = _mean_sd([(row["history_s"][0] - statistics.median(row["history_s"][1:])) / row["fit_s"]
                          for row in rows])
        label = f"{label}: {entry['code']}" + (f" with {entry['settings']}" if entry["settings"] else "")
        lines.append(f"| {label} | {wall[0]:.1f} ± {wall[1]:.1f} | {step[0]:.3f} ± {step[1]:.3f} | "
                     f"{rows[0]['images']:,} | {100 * share[0]:.1f}% ± {100 * share[1]:.1f} | "
                     f"{100 * outside[0]:.1f}% ± {100 * outside[1]:.1f} | {100 * first[0]:.1f}% ± {100 * first[1]:.1f} | "
                     f"{', '.join(rows[0]['checkpoints_left'])} |")
    before = results.get("before", {}).get("overhead")
    saving = ""
    if before:  # each epoch of that checkout saved a checkpoint (and best.keras when it improved), outside the epochs
        per_epoch = statistics.mean((row["fit_s"] - sum(row["history_s"])) / len(row["history_s"]) for row in before)
        big = 466 / 173 * per_epoch  # the 227 px model with its optimizer, counting the epoch's time as one save
        saving = (f" (before, an epoch's checkpoint and, when validation improved, best.keras, 173 MB each, took "
                  f"{per_epoch:.1f} s here; at that rate the 227 px model's 466 MB takes at most {big:.1f} s, "
                  f"{100 * big / 60:.0f}% of 60 s)")
    lines += ["", "What is left of the overhead is the compile (once, in the first epoch) and validation (455 images "
              "an epoch against 4,096 trained), neither of which this change could remove; what it could, the time "
              "outside the epochs (an epoch checkpoint and a best.keras of 173 MB each, every epoch), it cut to one "
              "commit at the end. With a step 50x faster (a GPU), the shares stay bounded: validation keeps its "
              "share (it is steps too); checkpoints cost at most one save per `--checkpoint-gap`" + saving + "; no "
              "step waits for the host (JAX and PyTorch run the per-step callbacks on Keras's thread); and each step "
              "function compiles once, kept by JAX's persistent compilation cache for the next process. The "
              "compile is the one share that grows as the steps shrink; how large it is on a GPU is not measured."]
    lines += ["", "**XLA on TensorFlow**: the `cpu` recipe's training step (67 px, batch 256, its shifts and flips in "
              "the model), with and without `--jit`; `model.jit_compile` is Keras's own flag after compiling (it "
              "turns it off, with a warning, when a layer cannot be compiled).", "",
              "| code | --jit | model.jit_compile | images/s | the start line of `alexnet train --recipe cpu --jit` |",
              "| --- | --- | --- | --- | --- |"]
    for label, entry in results.items():
        for jit in (False, True) if "xla" in entry else ():
            rows = [row for row in entry["xla"] if row["jit_asked"] == jit]
            speed = _mean_sd([row["images_per_s"] for row in rows])
            said = "<br>".join(entry["xla_start_line"]) if jit else ""
            lines.append(f"| {label} | {'on' if jit else 'off'} | {rows[0]['keras_jit_compile']} | "
                         f"{speed[0]:.0f} ± {speed[1]:.0f} | {said} |")
    lines += ["", "Before, `--jit` changed nothing (Keras compiled without XLA, and said so only after the start line had "
              "said XLA on), so the two rows of that checkout measure the same step: their difference is this shared "
              "machine's noise between processes. After, XLA compiles the model (Keras's flag stays True, and the "
              "run says nothing more); on this CPU TensorFlow's XLA runs the step about 3x slower than its oneDNN "
              "kernels, so `--jit` stays off by default on CPUs, and on by default on GPUs, where it was "
              "meant to run."]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "BENCHMARKS.md"
    out.write_text(with_section(out.read_text(), TITLE, text))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["overhead", "compiles", "xla", "xla-all", "all", "measure", "write"])
    parser.add_argument("--label", default="after")
    parser.add_argument("--only-overhead", action="store_true", help="measure: keep the label's other figures")
    parser.add_argument("--jit", default="off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--settings", default="", help="JSON of TrainConfig settings over the run's")
    parser.add_argument("--code", default=str(ROOT), help="the checkout whose alexnet package runs")
    args = parser.parse_args()
    if args.kind == "overhead":
        print(json.dumps(overhead(args, args.settings)))
    elif args.kind == "compiles":
        print(json.dumps(compiles(args)))
    elif args.kind == "xla":
        print(json.dumps(xla(args)))
    elif args.kind == "measure":
        measure(args)
    elif args.kind == "write":
        write(args)
    elif args.kind == "xla-all":
        rows = [_child(["xla", "--jit", jit, "--seed", str(seed)], args.code) for seed in range(args.seeds)
                for jit in ("off", "on")]
        summary = {jit: [row["images_per_s"] for row in rows if row["jit_asked"] == (jit == "on")]
                   for jit in ("off", "on")}
        print(json.dumps({"images_per_s": {jit: [statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0]
                                           for jit, v in summary.items()},
                          "runs": rows, "start_line": start_line(args.code)}))
    else:
        rows = [_child(["overhead", "--seed", str(seed), "--settings", args.settings], args.code)
                for seed in range(args.seeds)]
        shares = [row["overhead"] for row in rows]
        print(json.dumps({"overhead_mean": statistics.mean(shares), "overhead_sd": statistics.stdev(shares)
                          if len(shares) > 1 else 0.0, "runs": rows}))


if __name__ == "__main__":
    main()
