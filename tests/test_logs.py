import csv

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import event_steps, tiny_model

from alexnet.pipeline import order
from alexnet.pipeline.feed import Feed
from alexnet.runs import RunFolder
from alexnet.training.logs import EpochLog, UnpaddedValidationLoss, trim_logs


def test_epoch_log_writes_each_epoch_and_trim_drops_the_ones_after_a_checkpoint(tmp_path):
    log = EpochLog(RunFolder(tmp_path), train_images=100)
    log.set_model(tiny_model())
    for epoch in range(4):
        log.on_epoch_begin(epoch)
        log.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5, "val_loss": 2.0, "val_accuracy": 0.4})
    log.on_train_end()
    assert event_steps(tmp_path / "logs" / "train", "epoch_loss") == [0, 1, 2, 3]

    trim_logs(RunFolder(tmp_path), 2)  # resume from the checkpoint after epoch 2: epochs 2 and 3 run again
    with open(tmp_path / "history.csv", newline="") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
    assert event_steps(tmp_path / "logs" / "train", "epoch_loss") == [0, 1]
    assert event_steps(tmp_path / "logs" / "validation", "epoch_accuracy") == [0, 1]


def test_trim_survives_a_torn_event_file(tmp_path):
    log = EpochLog(RunFolder(tmp_path), train_images=100)
    log.set_model(tiny_model())
    for epoch in range(3):
        log.on_epoch_begin(epoch)
        log.on_epoch_end(epoch, {"loss": 1.0, "accuracy": 0.5, "val_loss": 2.0, "val_accuracy": 0.4})
    log.on_train_end()
    events = next((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))
    events.write_bytes(events.read_bytes()[:-7])  # the crash cut the last record (epoch 2's learning rate) short
    with pytest.raises(tf.errors.DataLossError):
        event_steps(tmp_path / "logs" / "train", "epoch_loss")
    trim_logs(RunFolder(tmp_path), 3)
    assert event_steps(tmp_path / "logs" / "train", "epoch_loss") == [0, 1, 2]  # readable again, whole records kept
    assert event_steps(tmp_path / "logs" / "train", "epoch_learning_rate") == [0, 1]


def test_the_validation_loss_over_padded_batches_is_corrected_to_the_true_mean():
    # 7 images in batches of 3: 9 rows read, 2 of them padding of weight 0, which Keras's mean loss counts.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)).astype("float32"), rng.integers(0, 2, 7)
    model = tiny_model()
    rows = order.evaluation_rows(7, 3)
    batches = [(x[np.maximum(r, 0)], y[np.maximum(r, 0)], (r >= 0).astype("float32")) for r in rows.reshape(-1, 3)]
    keras_loss = model.evaluate(_Batches(batches), verbose=0, return_dict=True)["loss"]
    probabilities = model.predict(x, verbose=0)
    true_loss = float(np.mean(-np.log(probabilities[np.arange(7), y])))
    logs = {"val_loss": keras_loss}
    UnpaddedValidationLoss(Feed(3).evaluation_size(7) / 7).on_epoch_end(0, logs)
    assert abs(keras_loss - true_loss) > 0.01  # what Keras says is off
    np.testing.assert_allclose(logs["val_loss"], true_loss, rtol=1e-5)


class _Batches(keras.utils.PyDataset):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]
