"""One measurement per process (each Keras backend needs its own), printed as a JSON line.

    python bench/measure.py KIND IMPL [--backend B] [--jit on|off] [--mixed-precision on|off] [--data PATH] ...

KIND: pipeline | rss | train | infer. IMPL: tutorial (bench/tutorial.py) | ours (the alexnet package).
bench/run.py runs them all and writes BENCHMARKS.md.
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
BATCH = 32
SIZE = 227


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def training_split(data):
    """The 45,000 training images of the tutorial's split, as uint8 arrays."""
    from alexnet.data.splits import load_splits

    splits = load_splits(str(data), val_size=5000, seed=0)
    return splits.x_train, splits.y_train


def _toggle(value):
    return None if value == "auto" else value == "on"


def setup_ours(args):
    """Loads Keras with the chosen backend and speed settings; returns the resolved settings."""
    from alexnet.backend import load_keras, select_backend, speed_settings

    select_backend(args.backend)
    keras = load_keras()
    settings = speed_settings(_toggle(args.jit), _toggle(args.mixed_precision))
    keras.config.set_dtype_policy(settings["dtype_policy"])
    return settings


def our_model(settings):
    from alexnet.model.builders import alexnet
    from alexnet.model.compiling import compile_model
    from alexnet.settings.config import TrainConfig

    model = alexnet(image_size=SIZE)
    return compile_model(model, TrainConfig(), steps_per_epoch=1, jit=settings["jit"])


def timed(function, warmup, repeats):
    for _ in range(warmup):
        function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def pipeline(args):
    x, y = training_split(args.data)
    if args.impl == "tutorial":
        sys.path.insert(0, str(ROOT / "bench"))
        import tutorial

        batches = iter(tutorial.train_pipeline(x, y, shuffle_buffer=args.shuffle_buffer))
        seconds = timed(lambda: next(batches), warmup=1, repeats=args.batches)  # warm-up fills the buffer
        return {"images_per_s": BATCH / seconds, "note": f"shuffle buffer {args.shuffle_buffer}"}
    settings = setup_ours(args)
    import keras

    from alexnet.model.builders import alexnet
    from alexnet.pipeline.arrays import training_batches
    from alexnet.pipeline.feed import Epochs, Feed

    model = alexnet(image_size=SIZE)
    head = keras.Model(model.input, model.get_layer("resize").output)  # the model's own preprocessing
    dataset = training_batches(x, y, Feed(BATCH), Epochs(0, 1))
    batches = iter(dataset) if hasattr(dataset, "prefetch") else (dataset[i] for i in range(len(dataset)))

    preprocess = compiled(head, args.backend)

    def step():
        images, _ = next(batches)
        out = preprocess(images)  # stays on the device, as when it feeds the network
        if hasattr(out, "block_until_ready"):  # JAX dispatches asynchronously
            out.block_until_ready()
        assert tuple(out.shape) == (BATCH, SIZE, SIZE, 3)

    return {"images_per_s": BATCH / timed(step, warmup=3, repeats=args.batches), **settings}


def compiled(model, backend):
    """The model as the backend runs it inside a training step: a graph (TensorFlow), jitted (JAX), eager (torch)."""
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: model(x, training=False))
    if backend == "jax":
        import jax

        state = [v.value for v in model.non_trainable_variables]
        return jax.jit(lambda x: model.stateless_call([], state, x, training=False)[0])
    return lambda x: model(x, training=False)


def rss(args):
    x, y = training_split(args.data)
    if args.impl == "tutorial":
        sys.path.insert(0, str(ROOT / "bench"))
        import tutorial

        next(iter(tutorial.train_pipeline(x, y, shuffle_buffer=args.shuffle_buffer)))
        return {"peak_rss_mb": peak_rss_mb(), "shuffle_buffer": args.shuffle_buffer, "train_images": len(x)}
    setup_ours(args)
    from alexnet.pipeline.arrays import training_batches
    from alexnet.pipeline.feed import Epochs, Feed

    dataset = training_batches(x, y, Feed(BATCH), Epochs(0, 1))
    next(iter(dataset)) if hasattr(dataset, "prefetch") else dataset[0]
    return {"peak_rss_mb": peak_rss_mb(), "train_images": len(x)}


def train(args):
    x, y = training_split(args.data)
    x, y = x[:BATCH * (args.steps + 4)], y[:BATCH * (args.steps + 4)]  # only the batches the steps use
    if args.impl == "tutorial":
        sys.path.insert(0, str(ROOT / "bench"))
        import tutorial

        model = tutorial.model()
        batches = iter(tutorial.train_pipeline(x, y, shuffle_buffer=len(x)).repeat())
        settings = {"dtype_policy": "float32", "jit": False}
    else:
        settings = setup_ours(args)
        from alexnet.pipeline.arrays import training_batches
        from alexnet.pipeline.feed import Epochs, Feed

        model = our_model(settings)
        dataset = training_batches(x, y, Feed(BATCH), Epochs(0, 1))
        batches = iter(dataset.repeat()) if hasattr(dataset, "prefetch") else \
            (dataset[i % len(dataset)] for i in range(10 ** 6))

    def step():
        images, labels = next(batches)
        model.train_on_batch(images, labels)

    seconds = timed(step, warmup=2, repeats=args.steps)
    return {"images_per_s": BATCH / seconds, **settings}


def infer(args):
    x, _ = training_split(args.data)
    batch, one = x[:BATCH], x[BATCH:BATCH + 1]
    if args.impl == "tutorial":
        sys.path.insert(0, str(ROOT / "bench"))
        import tutorial

        model = tutorial.model()

        def predict(images):  # the tutorial's preprocessing, then the model
            processed, _ = tutorial.process_images(images, None)
            return model.predict_on_batch(processed)
        settings = {"dtype_policy": "float32", "jit": False}
    else:
        settings = setup_ours(args)
        model = our_model(settings)
        predict = model.predict_on_batch
    throughput = BATCH / timed(lambda: predict(batch), warmup=2, repeats=args.steps)
    latencies = []
    predict(one)
    for _ in range(10):
        started = time.perf_counter()
        predict(one)
        latencies.append(time.perf_counter() - started)
    return {"images_per_s": throughput, "latency_ms": 1000 * float(np.median(latencies)), **settings}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["pipeline", "rss", "train", "infer"])
    parser.add_argument("impl", choices=["tutorial", "ours"])
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--jit", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--mixed-precision", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--shuffle-buffer", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    if args.impl == "tutorial":
        os.environ["KERAS_BACKEND"] = "tensorflow"  # its code is TensorFlow's
    result = {"pipeline": pipeline, "rss": rss, "train": train, "infer": infer}[args.kind](args)
    print(json.dumps({"kind": args.kind, "impl": args.impl, "backend": args.backend if args.impl == "ours"
                      else "tensorflow", **result}))


if __name__ == "__main__":
    main()
