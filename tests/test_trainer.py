import types

import keras
import numpy as np

from alexnet.pipeline.feed import Feed
from alexnet.runs import RunFolder
from alexnet.training import checkpoints, logs, mid_epoch, stopping
from alexnet.training.trainer import fit_callbacks


def _job(folder, test_each_epoch):
    config = types.SimpleNamespace(test_each_epoch=test_each_epoch, epochs=3, checkpoint_every=0, checkpoint_gap=60)
    splits = types.SimpleNamespace(class_names=["a", "b", "c"], x_train=np.zeros(10), x_val=np.zeros(3),
                                   x_test=np.zeros(4))
    return types.SimpleNamespace(
        config=config, splits=splits, distribution=types.SimpleNamespace(shard=(0, 1), replicas=1),
        steps_per_epoch=5, images_per_epoch=10, streamed=False, global_batch=2, folder=folder, state=folder, speed={"device": "cpu"},
        skips=None, interrupt=stopping.DeferredInterrupt(), feed=Feed(2))


def test_the_callbacks_run_in_the_order_their_work_needs(tmp_path):
    callbacks = fit_callbacks(_job(RunFolder(tmp_path), True), checkpoints.Position(1, 2, [0.0]), True, None)
    # The validation loss is corrected and TestEachEpoch adds to the logs before EpochLog writes them; the epoch
    # is logged, then checkpointed; a step's checkpoint is saved before StopOnInterrupt stops the run.
    assert [type(c) for c in callbacks] == [
        logs.UnpaddedValidationLoss, logs.TestEachEpoch, logs.EpochLog, checkpoints.Checkpoints, logs.TimeEstimate,
        logs.SkippedFileCount, mid_epoch.RestoreMetrics, mid_epoch.StepCheckpoints, stopping.StopOnInterrupt]
    assert callbacks[2].first_share == 1 - 2 / 5  # the resumed epoch trains its last 3 of 5 steps here
    assert callbacks[0].factor == 4 / 3  # 3 validation images in 2 batches of 2: one row of padding
    assert callbacks[3].gap == 60
    plain = [type(c) for c in fit_callbacks(_job(RunFolder(tmp_path), False), checkpoints.Position(), True, None)]
    assert plain[1] is logs.EpochLog and mid_epoch.RestoreMetrics not in plain  # nothing to restore


def _async_safe(callbacks):
    """Keras's own rule (keras/src/callbacks/callback_list.py, `_configure_async_dispatch`), on JAX and PyTorch;
    its TensorFlow backend never dispatches asynchronously."""
    hooks = ("on_batch_end", "on_train_batch_end", "on_test_batch_end", "on_predict_batch_end")
    return all(getattr(c, "async_safe", False) or all(getattr(type(c), hook) is getattr(keras.callbacks.Callback, hook)
                                                     for hook in hooks) for c in callbacks)


def test_the_per_step_callbacks_let_keras_run_them_asynchronously(tmp_path):
    # Keras dispatches the per-step end hooks to a thread (the device runs ahead) only when every callback that
    # defines one says it is async-safe; a fit resumed mid-epoch restores its metric sums once, synchronously.
    assert _async_safe(fit_callbacks(_job(RunFolder(tmp_path), True), checkpoints.Position(), True, None))
    assert not _async_safe(fit_callbacks(_job(RunFolder(tmp_path), False), checkpoints.Position(1, 2, [0.0]), True,
                                         None))
    assert not _async_safe([keras.callbacks.TerminateOnNaN()])  # the rule bites: it reads the loss every step
