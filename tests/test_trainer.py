import types

import keras
import numpy as np

from alexnet.runs import RunFolder
from alexnet.training import checkpoints, logs, stopping
from alexnet.training.trainer import fit_callbacks


def _job(folder, test_each_epoch):
    config = types.SimpleNamespace(test_each_epoch=test_each_epoch, epochs=3, checkpoint_every=0)
    splits = types.SimpleNamespace(class_names=["a", "b", "c"], x_train=np.zeros(10), x_test=np.zeros(4))
    return types.SimpleNamespace(
        config=config, splits=splits, distribution=types.SimpleNamespace(shard=(0, 1), replicas=1),
        steps_per_epoch=5, images_per_epoch=10, streamed=False, global_batch=2, folder=folder, state=folder, speed={"device": "cpu"},
        skips=None, interrupt=stopping.DeferredInterrupt())


def test_the_callbacks_run_in_the_order_their_work_needs(tmp_path):
    callbacks = fit_callbacks(_job(RunFolder(tmp_path), True), checkpoints.Position(1, 2), True, None)
    # TestEachEpoch adds to the logs that EpochLog writes; the epoch is logged, then checkpointed; a step's
    # checkpoint is saved before StopOnInterrupt stops the run.
    assert [type(c) for c in callbacks] == [
        logs.TestEachEpoch, logs.EpochLog, checkpoints.Checkpoints, keras.callbacks.TerminateOnNaN,
        logs.TimeEstimate, logs.SkippedFileCount, checkpoints.RestoreMetrics, checkpoints.StepCheckpoints,
        stopping.StopOnInterrupt]
    assert callbacks[1].first_share == 1 - 2 / 5  # the resumed epoch trains its last 3 of 5 steps here
    assert [type(c) for c in fit_callbacks(_job(RunFolder(tmp_path), False), checkpoints.Position(), True, None)][0] \
        is logs.EpochLog
