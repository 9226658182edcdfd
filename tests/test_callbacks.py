import csv

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import event_steps

from alexnet import callbacks
from alexnet.callbacks import Checkpoints, EpochLog, StopOnInterrupt, TimeEstimate, in_order, trim_logs
from alexnet.runs import RunFolder


def _tiny_model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def test_epoch_log_writes_each_epoch_and_trim_drops_the_ones_after_a_checkpoint(tmp_path):
    log = EpochLog(RunFolder(tmp_path), train_images=100)
    log.set_model(_tiny_model())
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
    log.set_model(_tiny_model())
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


def test_checkpoints_keep_the_last_and_the_best_and_skip_nan(tmp_path):
    callback = Checkpoints(RunFolder(tmp_path))
    model = _tiny_model()
    callback.set_model(model)
    callback.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.5})
    best_weights = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1 for w in model.get_weights()])
    callback.on_epoch_end(1, {"loss": 0.9, "val_accuracy": 0.4})  # worse: best.keras stays
    callback.on_epoch_end(2, {"loss": float("nan"), "val_accuracy": 0.9})  # NaN: nothing saved
    callback.on_epoch_end(3, {"loss": 0.8, "val_accuracy": float("nan")})  # saved, but not the best
    callback.on_epoch_end(4, {"loss": 0.8, "val_accuracy": 0.45})  # saved; the oldest checkpoint goes
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [  # the newest two, to fall back on
        "epoch-0004.json", "epoch-0004.keras", "epoch-0005.json", "epoch-0005.keras", "state.json"]
    assert RunFolder(tmp_path).latest_checkpoint()[0] == 5
    assert RunFolder(tmp_path).read_state() == {"epochs": 5, "best_val_accuracy": 0.5}
    best = keras.saving.load_model(tmp_path / "best.keras")
    for got, expected in zip(best.get_weights(), best_weights):
        np.testing.assert_array_equal(got, expected)


def test_latest_checkpoint_ignores_half_written_files(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "epoch-0003.keras").write_bytes(b"x")
    (folder / ".epoch-0004.tmp123.keras").write_bytes(b"partial")
    assert RunFolder(tmp_path).latest_checkpoint() == (3, folder / "epoch-0003.keras")
    assert RunFolder(tmp_path / "nowhere").latest_checkpoint() == (0, None)


def test_callbacks_run_in_the_order_their_work_needs(tmp_path):
    folder = RunFolder(tmp_path)
    stop, test, log = StopOnInterrupt(None), callbacks.TestEachEpoch(None), EpochLog(folder, 1)
    nan, estimate, checkpoints = keras.callbacks.TerminateOnNaN(), TimeEstimate(1, "cpu"), Checkpoints(folder)
    ordered = in_order([stop, nan, checkpoints, estimate, log, test])
    assert ordered.index(test) < ordered.index(log) < ordered.index(checkpoints)  # logs complete, then saved
    assert ordered[-1] is stop  # after the epoch's checkpoint
    assert ordered.index(nan) < ordered.index(estimate)  # the others keep the order given


def test_a_second_stop_signal_stops_at_once_with_the_first_signals_status():
    import signal

    from alexnet.errors import StopNow

    interrupt = callbacks.DeferredInterrupt()
    interrupt._handle(signal.SIGTERM, None)  # recorded, acted on at the next safe point
    assert interrupt.requested and interrupt.exit_code == 143
    with pytest.raises(StopNow) as caught:
        interrupt._handle(signal.SIGTERM, None)
    assert caught.value.exit_code == 143 and isinstance(caught.value, KeyboardInterrupt)


def test_checkpoints_list_mid_epoch_ones_after_their_epoch_and_restore_the_random_generators(tmp_path):
    folder = RunFolder(tmp_path)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Dropout(0.5)(inputs)))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.train_on_batch(np.ones((4, 3), "float32"), np.zeros(4))
    epoch_one = callbacks.save_checkpoint(model, folder, 1)
    state = callbacks._seed_states(model)[0]
    saved = keras.ops.convert_to_numpy(state).copy()
    mid = callbacks.save_checkpoint(model, folder, 1, 7)
    assert [position for position, _ in folder.positions()] == [(1, 7), (1, 0)]
    assert mid.name == "epoch-0001-step-0000007.keras" and folder.sidecar(mid).is_file()

    model.train_on_batch(np.ones((4, 3), "float32"), np.zeros(4))  # the generator moves on
    assert not np.array_equal(keras.ops.convert_to_numpy(state), saved)
    position = callbacks.restore(model, folder)
    assert (position.epoch, position.step) == (1, 7) and len(position.metrics) == len(model.metrics_variables)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(state), saved)

    folder.sidecar(mid).unlink()  # a mid-epoch checkpoint cannot go on without its random states and sums
    assert callbacks.restore(model, folder).step == 0
    assert (tmp_path / "checkpoints" / (mid.name + ".damaged")).is_file() and epoch_one.is_file()
