"""Where a training step's time goes, per op: ours on TensorFlow or torch, or the hand-written PyTorch loop.

    python bench/profile_step.py ours-tensorflow|ours-torch|torch-loop [--size 67] [--batch 256] [--steps 3] [--top 10]

The step is bench/peer.py's (the `cpu` recipe's step, or its PyTorch peer) on synthetic uint8 batches. After
two warm-up steps, `--steps` steps run under the engine's profiler: `torch.profiler` (self CPU time of each
op), or TensorFlow's (`tf.profiler.experimental`; the host plane's op events, summed by op type, call ops
that contain others left out). Prints the ops by time per step, with their share of the total op time.
"""

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall", "While", "If", "StatelessIf", "StatelessWhile",
            "__inference", "Identity", "NoOp"}


def torch_profile(step, data, steps):
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for i in range(steps):
            step(*data[i % len(data)])
    totals = {event.key: event.self_cpu_time_total / 1e3 for event in profiler.key_averages()}  # ms
    return totals


def tensorflow_profile(step, data, steps):
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    folder = tempfile.mkdtemp(prefix="profile-")
    tf.profiler.experimental.start(folder)
    for i in range(steps):
        step(*data[i % len(data)])
    tf.profiler.experimental.stop()
    totals = collections.Counter()
    for path in Path(folder).rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace.FromString(path.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            for line in plane.lines:
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name
                    if ":" not in name or "::" in name or " " in name or name.startswith("__"):
                        continue  # not an op ("name:OpType"): the executor's and Python's own events
                    kind = name.rsplit(":", 1)[1]
                    if kind and not any(kind.startswith(c) for c in CALL_OPS):
                        totals[kind] += event.duration_ps / 1e9  # ms
    return dict(totals)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["ours-tensorflow", "ours-torch", "torch-loop"])
    parser.add_argument("--size", type=int, default=67)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--jit", default="auto", choices=["auto", "on", "off"])
    args = parser.parse_args()
    import peer

    if args.what == "torch-loop":
        step, _ = peer.torch_step_function(args.size, args.batch)
    else:
        step, _ = peer.our_step_function(args.what.split("-", 1)[1], args.size, args.batch, 0,
                                         None if args.jit == "auto" else args.jit == "on")
    data = peer.batches(args.batch, 0)
    for i in range(2):
        step(*data[i])
    started = time.perf_counter()
    profile = tensorflow_profile if args.what == "ours-tensorflow" else torch_profile
    totals = profile(step, data, args.steps)
    wall = (time.perf_counter() - started) / args.steps * 1e3
    total = sum(totals.values())
    print(f"{args.what} at {args.size} px, batch {args.batch}: {wall:.0f} ms a step under the profiler, "
          f"{total / args.steps:.0f} ms of op time a step (ops on parallel threads add up)")
    print("| op | ms a step | share |\n| --- | ---: | ---: |")
    for name, ms in sorted(totals.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"| {name} | {ms / args.steps:.1f} | {ms / total:.0%} |")


if __name__ == "__main__":
    main()
