"""Training: a run from its settings to its folder, crash-safe and resumable.

- `start.py`: the entry points `train(config)` and `resume(run_dir)`; chooses the backend, then loads the rest.
- `job.py`: what one training process works with, resolved once (`Job`): data, splits, distribution, folder.
- `trainer.py`: the run, top to bottom: build, fit (its callbacks in one explicit order), finish.
- `inputs.py`: what a run's `fit` reads: array batches or streams, from the pipeline.
- `checkpoints.py`: the commits (epoch checkpoints, at most every --checkpoint-gap), the best model, and
  restoring from them.
- `mid_epoch.py`: checkpoints in an epoch's middle, and the metric sums a resumed epoch goes on from.
- `logs.py`: history.csv, TensorBoard, the time estimate and the skipped-file count of each epoch.
- `stopping.py`: Ctrl-C and the stop signals, recorded and acted on at safe points.
- `distribute.py`: scale-out on tf.distribute and keras.distribution.
- `environment.py`: what a run records about the code and the machine.

May import: `alexnet.settings`, `alexnet.model`, `alexnet.data`, `alexnet.pipeline` and `alexnet.results`.
Only `start` may be imported before the backend is chosen (it does not load Keras).
"""
