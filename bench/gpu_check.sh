#!/usr/bin/env bash
# The GPU check: the fast recipe on the full CIFAR-10 training split, JAX backend, one command.
#
# Here (a machine with pip and ../shared/datasets), once:
#   bash bench/gpu_check.sh prepare     # Python 3.12 wheels of keras, optree, namex -> .whl/, the data -> .data/
# On the GPU machine (JAX but no TensorFlow), from the repository root, with .whl and .data carried:
#   bash bench/gpu_check.sh [extra `alexnet train` flags]
# It prints the device, then per epoch: seconds, training images/s, validation and test accuracy,
# and copies history.csv, metrics.json and report.md to $OUT (or /tmp/gpu-check).
# Then the streamed path (Grain, files read from disk): the input pipeline's images/s alone, beside the step's.
# Budget: keep the whole command under 8 minutes: `bash bench/gpu_check.sh --epochs 3` (the issue's check),
# then the ImageNet step, 20 steps on JAX and on Keras-on-torch (at most 4 minutes each).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "prepare" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  grep -qx '/.data/' .git/info/exclude 2>/dev/null || echo '/.data/' >> .git/info/exclude
  rm -rf .whl && mkdir -p .whl .data
  keras_version=$(python3 -c 'import keras; print(keras.__version__)' 2>/dev/null || echo 3.15.1)
  # Grain (the JAX backend's streaming engine) and what it needs beyond JAX.
  for package in "keras==$keras_version" optree namex grain array-record etils cloudpickle portpicker absl-py \
      protobuf fsspec importlib_resources zipp typing_extensions; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .whl "$package"
  done
  cp ../shared/datasets/cifar10-jpeg.tar.gz .data/
  ls -l .whl .data
  exit 0
fi

out=${OUT:-/tmp/gpu-check}
python3=${PYTHON:-python3}  # PYTHON=.venv/bin/python NO_WHEELS=1 for a dry run on a CPU machine
mkdir -p "$out"
if [ -z "${NO_WHEELS:-}" ]; then
  $python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax ALEXNET_CACHE_DIR=/tmp/alexnet-cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$python3 -c 'import jax, keras; print("jax", jax.__version__, jax.devices(), "keras", keras.__version__)'
run=/tmp/gpu-check-run
rm -rf "$run"
started=$(date +%s)
# JAX_LOG_COMPILES: each compile is logged with its time (one each for train, test and predict is the goal).
JAX_LOG_COMPILES=1 $python3 -m alexnet train --backend jax --recipe fast --data .data/cifar10-jpeg.tar.gz \
  --test-each-epoch --run-dir "$run" "$@" 2>&1 | grep -v '━' > "$out/train.log" || { tail -40 "$out/train.log"; exit 1; }
grep -v "Compiling \|Finished \|compilation cache\|jax_log_compiles" "$out/train.log" | tail -25 || true
echo "whole command: $(( $(date +%s) - started )) s"
echo "compiles of the step functions (JAX_LOG_COMPILES):"
grep -oE "Finished XLA compilation of jit\([a-z_]+_step\) in [0-9.]+ sec" "$out/train.log" | sort | uniq -c || true
$python3 - "$run" <<'EOF'
import csv, json, sys
run = sys.argv[1]
rows = list(csv.DictReader(open(f"{run}/history.csv")))
print(f"{'epoch':>5} {'seconds':>8} {'images/s':>9} {'val acc':>8} {'test acc':>8}")
total = 0.0
for row in rows:
    total += float(row["seconds"])
    print(f"{int(row['epoch']) + 1:>5} {float(row['seconds']):8.1f} {float(row['images_per_s']):9.0f} "
          f"{float(row['val_accuracy']):8.4f} {float(row['test_accuracy']):8.4f}")
metrics = json.load(open(f"{run}/metrics.json"))
print(f"training {total:.0f} s for {len(rows)} epochs; final test accuracy {metrics['test_accuracy']:.4f}")
EOF
cp "$run/history.csv" "$run/metrics.json" "$run/report.md" "$run/config.json" "$out/"

echo "streamed input pipeline (Grain, $($python3 -c 'import os; print(os.cpu_count())') cores):"
$python3 - .data/cifar10-jpeg.tar.gz <<'EOF'
import sys, time
from alexnet.data.splits import load_splits
from alexnet.pipeline import streams
from alexnet.pipeline.feed import Epochs, Feed
from alexnet.settings import recipes
splits = load_splits(sys.argv[1], stream=True, seed=0)
for recipe, size in (("fast", (32, 32)), ("imagenet", (227, 227))):
    transform = streams.transforms(recipes.get(recipe), size, size[0])[0]  # resize, or random-resized crop + flip
    crop = transform.crop
    feed = Feed(512, transform=transform, skips=streams.SkippedFiles())
    stream = streams.training_stream(splits.x_train, splits.y_train, feed, Epochs(0, 1))
    batches = iter(stream)
    next(batches)  # the workers have started
    started, count = time.perf_counter(), 0
    for _, (images, _, _) in zip(range(40), batches):
        count += len(images)
    print(f"  {crop} to {size[0]}x{size[1]}: {count / (time.perf_counter() - started):.0f} images/s")
EOF

# The imagenet recipe's step (227 px, 1000 classes, batch 128) on JAX and on Keras-on-torch, beside each other.
echo "imagenet recipe's step:"
for backend in jax torch; do
  $python3 -c "import $backend" 2>/dev/null || { echo "  $backend: not installed"; continue; }
  timeout 240 $python3 bench/imagenet_step.py --backends $backend --repeats 1 --steps 20 --out "$out/imagenet_step.md" \
    2>&1 | grep -v '━' | tail -4 || echo "  $backend: failed or timed out"
done
