import keras
import numpy as np
from helpers import tiny_model

from alexnet.runs import RunFolder
from alexnet.training.checkpoints import (Checkpoints, Position, remove_superseded, restore, save_checkpoint,
                                          seed_states)


def test_checkpoints_keep_the_last_and_the_best_and_skip_nan(tmp_path):
    callback = Checkpoints(RunFolder(tmp_path))
    model = tiny_model()
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
