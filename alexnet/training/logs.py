"""The epoch logs: history.csv and TensorBoard, written as each epoch ends, and what the console says.

Why not the stock `CSVLogger` and `TensorBoard`: they only append and buffer
their writes, so a `kill -9` leaves lost, duplicated or torn epochs. Here
every epoch is flushed as it ends, and a resumed run first drops whatever the
logs hold past the checkpoint it resumes from (`trim_logs`).
"""

import csv
import logging
import os
import time

import keras

from alexnet.backend import tensorflow
from alexnet.files import atomic_target
from alexnet.runs import tensorboard_tag

log = logging.getLogger(__name__)

# seconds: the whole epoch, validation included; images_per_s: the training part alone.
HISTORY_COLUMNS = ("epoch", "accuracy", "loss", "val_accuracy", "val_loss", "seconds", "images_per_s")
TEST_EACH_EPOCH_COLUMNS = ("test_accuracy", "test_seconds", "finished_at")  # with --test-each-epoch
TOP5_COLUMNS = ("top5_accuracy", "val_top5_accuracy")  # data with more than 5 classes (recipes.logs_top_k)


class EpochLog(keras.callbacks.Callback):
    """Writes each epoch's figures to history.csv and to TensorBoard, flushed as the epoch ends.

    TensorBoard gets `epoch_loss` and `epoch_accuracy` (and the learning rate)
    under logs/train and logs/validation, with the epoch as the step, as Keras's
    own TensorBoard callback names them.
    """

    def __init__(self, folder, train_images, extra_columns=(), first_share=1.0, validation=True):
        super().__init__()
        self.folder = folder  # runs.RunFolder
        self.train_images = train_images
        self.first_share = first_share  # of its images that the first epoch trains here (a mid-epoch resume: less)
        # Without validation (--val-size 0) its columns are absent, never empty or NaN.
        self.columns = tuple(column for column in HISTORY_COLUMNS + tuple(extra_columns)
                             if validation or not column.startswith("val_"))
        self._writers = {}
        self._started = self._trained = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started, self._trained = time.perf_counter(), None

    def on_test_begin(self, logs=None):  # validation starts: the epoch's training part is over
        if self._started is not None and self._trained is None:
            # The device may still run the last steps (JAX dispatches ahead): wait for the last one, once an epoch.
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None:
                keras.ops.convert_to_numpy(optimizer.iterations)
            self._trained = time.perf_counter() - self._started

    def _writer(self, tf, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.folder.log_dir(name)))
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        # TestEachEpoch (benchmarks only) ran before this callback: its time is its own column, not the epoch's.
        seconds = time.perf_counter() - self._started - float((logs or {}).get("test_seconds", 0.0))
        images, self.first_share = self.train_images * self.first_share, 1.0
        logs = {**(logs or {}), "seconds": seconds, "images_per_s": images / (self._trained or seconds)}
        path = self.folder.history_file
        new = not path.exists() or path.stat().st_size == 0
        columns = self.columns if new else _header(path)  # a resumed run keeps the columns it started with
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(columns)
            writer.writerow([epoch] + [repr(float(logs.get(k, float("nan")))) for k in columns[1:]])
            f.flush()
            os.fsync(f.fileno())
        tf = tensorflow()
        if tf is None:
            return  # no TensorFlow (JAX-only machines): history.csv alone
        learning_rate = getattr(getattr(self.model, "optimizer", None), "learning_rate", None)
        for part, prefix in (("train", ""), ("validation", "val_"), ("test", "test_")):  # test: --test-each-epoch
            if not any(prefix + metric in logs for metric in ("loss", "accuracy")):
                continue
            writer = self._writer(tf, part)
            with writer.as_default():
                for metric in ("loss", "accuracy", "top5_accuracy"):
                    if prefix + metric in logs:
                        tf.summary.scalar(tensorboard_tag(metric), float(logs[prefix + metric]), step=epoch)
                if part == "train" and learning_rate is not None:
                    rate = float(keras.ops.convert_to_numpy(learning_rate))
                    tf.summary.scalar(tensorboard_tag("learning_rate"), rate, step=epoch)
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _header(path):
    with open(path, newline="") as f:
        return tuple(next(csv.reader(f), ()))


def trim_logs(folder, epochs_done):
    """Drops history rows and TensorBoard events of epochs past the checkpoint a run resumes from."""
    history = folder.history_file
    if history.exists():
        with open(history, newline="") as f:
            rows = list(csv.reader(f))
        kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < epochs_done] if rows else []
        tmp = atomic_target(history)
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)
        os.replace(tmp, history)
    tf = tensorflow()
    if tf is None:
        return
    from tensorflow.core.util import event_pb2

    for events in sorted(folder.log_dir().glob("*/events.out.tfevents.*")):
        records, changed = [], False
        try:
            for record in tf.data.TFRecordDataset(str(events)).as_numpy_iterator():
                event = event_pb2.Event.FromString(record)
                if event.HasField("summary") and event.step >= epochs_done:
                    changed = True
                    continue
                records.append(record)
        except tf.errors.DataLossError:  # a record torn by the crash
            changed = True
        if changed:
            tmp = atomic_target(events)
            with tf.io.TFRecordWriter(str(tmp)) as writer:
                for record in records:
                    writer.write(record)
            os.replace(tmp, events)


class UnpaddedValidationLoss(keras.callbacks.Callback):
    """Corrects the epoch's `val_loss` for the padding of the validation batches (`order.evaluation_batch`).

    Keras's loss is the sum of the weighted losses over a batch's rows, padding
    included, divided by its rows, and its mean over batches weighs each by its
    rows: so `val_loss` is the true mean times n / (rows read). Accuracy is a
    weighted metric and needs nothing. First among the callbacks: the others,
    Keras's History and progress bar included, read the corrected figure.
    """

    def __init__(self, rows_read_per_row):
        super().__init__()
        self.factor = float(rows_read_per_row)  # `Feed.evaluation_size(n) / n`

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "val_loss" in logs:
            logs["val_loss"] = float(logs["val_loss"]) * self.factor


class TimeEstimate(keras.callbacks.Callback):
    """Says early how long the run will take, so that no one waits hours in silence.

    After a short warm-up (compilation and the first steps are slower), it
    measures the time per step and prints the time per epoch and for the whole
    run; on a CPU, when the run would take long, it suggests what to change.
    It reads the clock, not the step's figures: Keras may call it on a thread of
    its own, while the device runs ahead (`async_safe`).
    """

    async_safe = True

    def __init__(self, epochs_left, device, warmup_steps=5, measured_steps=10, long_seconds=900):
        super().__init__()
        self.epochs_left, self.device = epochs_left, device
        self.warmup_steps, self.measured_steps, self.long_seconds = warmup_steps, measured_steps, long_seconds
        self._step, self._started, self.estimate = 0, None, None

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step == self.warmup_steps:
            self._started = time.perf_counter()
        elif self._step == self.warmup_steps + self.measured_steps and self.params.get("steps"):
            per_step = (time.perf_counter() - self._started) / self.measured_steps
            per_epoch = per_step * self.params["steps"]
            self.estimate = per_epoch * self.epochs_left
            message = (f"\nMeasured {per_step:.3g} s/step: about {_duration(per_epoch)} per epoch, "
                       f"{_duration(self.estimate)} for the {self.epochs_left} epoch(s) to go "
                       "(validation not included).")
            if self.device == "cpu" and self.estimate > self.long_seconds:
                message += (" No GPU found: for a quicker run, lower --image-size (67 is the smallest), "
                            "cap the data with --limit-train, or train on a GPU.")
            log.info(message)


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class TestEachEpoch(keras.callbacks.Callback):
    """Adds `test_accuracy`, the seconds it took (`test_seconds`) and the time (`finished_at`) to each epoch's logs.

    Only for monitoring (bench/gpu_check.sh): nothing may be chosen by it, or the
    test split would stop measuring generalization.
    """

    def __init__(self, test_data, steps=None):
        super().__init__()
        self.test_data, self.steps = test_data, steps

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            started = time.perf_counter()
            results = self.model.evaluate(self.test_data, steps=self.steps, verbose=0, return_dict=True)
            logs["test_accuracy"] = results["accuracy"]
            logs["test_seconds"] = time.perf_counter() - started  # benchmarks subtract it from their wall-clock
            logs["finished_at"] = time.time()  # Unix time: where the epoch falls in a benchmark's wall-clock


class SkippedFileCount(keras.callbacks.Callback):
    """Says at the end of each epoch how many streamed files could not be read (each was named as it came)."""

    def __init__(self, skips):
        super().__init__()
        self.skips = skips  # streams.SkippedFiles

    def on_epoch_end(self, epoch, logs=None):
        count = self.skips.counts.get(epoch, 0)
        if count:
            log.warning(f"{count} file(s) could not be read in epoch {epoch + 1} and were skipped")
