import csv

import pytest
import tensorflow as tf
from helpers import event_steps, tiny_model

from alexnet.runs import RunFolder
from alexnet.training.logs import EpochLog, trim_logs


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
