import os
import time

import keras
import numpy as np
from helpers import tiny_model

from alexnet.runs import RunFolder
from alexnet.training.checkpoints import (Checkpoints, Position, remove_superseded, restore, save_checkpoint,
                                          seed_states, settle_best)
from alexnet.training.mid_epoch import StepCheckpoints
from alexnet.training.stopping import DeferredInterrupt


def test_checkpoints_keep_the_last_and_the_best_and_skip_nan(tmp_path):
    callback = Checkpoints(RunFolder(tmp_path))
    model = tiny_model()
    callback.set_model(model)
    callback.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.5})
    best_weights = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1 for w in model.get_weights()])
    callback.on_epoch_end(1, {"loss": 0.9, "val_accuracy": 0.4})  # worse: best.keras stays
    callback.on_epoch_end(2, {"loss": float("nan"), "val_accuracy": 0.9})  # NaN: nothing saved, the fit stops
    assert model.stop_training

    callback.on_epoch_end(3, {"loss": 0.8, "val_accuracy": float("nan")})  # saved, but not the best
    callback.on_epoch_end(4, {"loss": 0.8, "val_accuracy": 0.45})  # saved; the oldest checkpoint goes
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [  # the newest two, to fall back on
        "best-0001.keras", "epoch-0004.json", "epoch-0004.keras", "epoch-0005.json", "epoch-0005.keras", "state.json"]
    assert os.path.samefile(tmp_path / "best.keras", tmp_path / "checkpoints" / "best-0001.keras")  # a link
    assert RunFolder(tmp_path).latest_checkpoint()[0] == 5
    assert RunFolder(tmp_path).read_state() == {"epochs": 5, "best_val_accuracy": 0.5, "best_epoch": 1}
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


def test_checkpoints_list_mid_epoch_ones_after_their_epoch_and_restore_the_random_generators(tmp_path):
    folder = RunFolder(tmp_path)
    model = tiny_model(dropout=True)
    model.train_on_batch(np.ones((4, 3), "float32"), np.zeros(4))
    epoch_one = save_checkpoint(model, folder, 1)
    state = seed_states(model)[0]
    saved = keras.ops.convert_to_numpy(state).copy()
    mid = save_checkpoint(model, folder, 1, 7)
    assert [position for position, _ in folder.positions()] == [(1, 7), (1, 0)]
    assert mid.name == "epoch-0001-step-0000007.keras" and folder.sidecar(mid).is_file()

    model.train_on_batch(np.ones((4, 3), "float32"), np.zeros(4))  # the generator moves on
    assert not np.array_equal(keras.ops.convert_to_numpy(state), saved)
    position = restore(model, folder)
    assert (position.epoch, position.step) == (1, 7) and len(position.metrics) == len(model.metrics_variables)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(state), saved)

    folder.sidecar(mid).unlink()  # a mid-epoch checkpoint cannot go on without its random states and sums
    assert restore(model, folder).step == 0
    assert (tmp_path / "checkpoints" / (mid.name + ".damaged")).is_file() and epoch_one.is_file()


def test_a_resume_removes_the_mid_epoch_checkpoints_that_its_position_supersedes(tmp_path):
    folder = RunFolder(tmp_path)
    folder.checkpoint_dir.mkdir()
    for name in ("epoch-0001-step-0000003", "epoch-0002-step-0000001", "epoch-0002"):  # a crash kept the steps
        (folder.checkpoint_dir / f"{name}.keras").write_bytes(b"x")
        (folder.checkpoint_dir / f"{name}.json").write_text("{}")
    remove_superseded(folder, Position(2))
    assert sorted(p.name for p in folder.checkpoint_dir.iterdir()) == ["epoch-0002-step-0000001.json",
                                                                    "epoch-0002-step-0000001.keras",
                                                                    "epoch-0002.json", "epoch-0002.keras"]
    remove_superseded(folder, Position(2, 1))  # resumed from the step itself: it stays
    assert len(list(folder.checkpoint_dir.iterdir())) == 4


def _weights(path):
    return keras.saving.load_model(path).get_weights()


def test_short_epochs_are_committed_at_most_every_gap_and_the_best_waits_in_memory(tmp_path):
    folder = RunFolder(tmp_path)
    interrupt = DeferredInterrupt()
    callback = Checkpoints(folder, gap=3600, interrupt=interrupt)
    model = tiny_model()
    callback.set_model(model)
    callback.set_params({"epochs": 4})
    callback.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.5})  # the best so far, not committed: within the gap
    best = [w.copy() for w in model.get_weights()]
    assert not folder.checkpoint_dir.exists() and callback.pending[0] == 1
    model.set_weights([w + 1 for w in best])
    callback.on_epoch_end(1, {"loss": 0.9, "val_accuracy": 0.4})
    assert not folder.checkpoint_dir.exists()
    interrupt.received = 15  # a stop signal: this epoch is committed, with the best model that waited
    model.set_weights([w + 2 for w in best])
    callback.on_epoch_end(2, {"loss": 0.8, "val_accuracy": 0.3})
    assert [epoch for epoch, _ in folder.checkpoints()] == [3] and folder.read_state()["best_epoch"] == 1
    for got, expected in zip(_weights(tmp_path / "best.keras"), best):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(model.get_weights(), [w + 2 for w in best]):  # the model holds its own weights again
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(_weights(folder.checkpoint_file(3)), [w + 2 for w in best]):
        np.testing.assert_array_equal(got, expected)
    interrupt.received = None
    callback.on_epoch_end(3, {"loss": 0.7, "val_accuracy": 0.6})  # the fit's last epoch: always committed
    assert [epoch for epoch, _ in folder.checkpoints()] == [4, 3] and folder.read_state()["best_epoch"] == 4
    assert [epoch for epoch, _ in folder.best_checkpoints()] == [4, 1]


def test_a_mid_epoch_checkpoint_writes_the_best_model_waiting_in_memory(tmp_path):
    folder = RunFolder(tmp_path)
    checkpoints = Checkpoints(folder, gap=3600)
    model = tiny_model()
    model.train_on_batch(np.ones((4, 3), "float32"), np.zeros(4))  # builds the metrics
    for callback in (checkpoints, steps := StepCheckpoints(checkpoints, 0.0001, DeferredInterrupt())):
        callback.set_model(model)
        callback.set_params({"epochs": 3, "steps": 5})
    checkpoints.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.5})
    steps.on_epoch_begin(1)
    steps.on_train_batch_begin(0)  # nothing trained in this epoch yet: nothing saved
    assert not folder.checkpoint_dir.exists()
    time.sleep(0.01)
    steps.on_train_batch_begin(2)
    assert [position for position, _ in folder.positions()] == [(1, 2)]
    assert [epoch for epoch, _ in folder.best_checkpoints()] == [1] and (tmp_path / "best.keras").is_file()


def test_a_resume_links_best_keras_to_the_best_committed_epoch_and_drops_later_ones(tmp_path):
    folder = RunFolder(tmp_path)
    folder.checkpoint_dir.mkdir()
    model = tiny_model()
    for epoch in (1, 3):  # best-0003 was written just before a commit that a crash prevented
        model.set_weights([np.full_like(w, epoch) for w in model.get_weights()])
        model.save(folder.best_checkpoint(epoch))
    (tmp_path / "history.csv").write_text("epoch,val_accuracy\n0,0.5\n1,0.4\n2,0.7\n")
    folder.write_state(2, 0.5, 1)
    settle_best(folder, 2)
    assert [epoch for epoch, _ in folder.best_checkpoints()] == [1]
    assert os.path.samefile(tmp_path / "best.keras", folder.best_checkpoint(1))
    assert folder.read_state() == {"epochs": 2, "best_val_accuracy": 0.5, "best_epoch": 1}
