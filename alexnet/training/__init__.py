"""Training: a run from its settings to its folder, crash-safe and resumable.

- `start.py`: the entry points `train(config)` and `resume(run_dir)`; chooses the backend, then loads the rest.
- `trainer.py`: the run, top to bottom: prepare, build, fit, finish.
- `callbacks.py`: what runs inside `fit`: checkpoints, the epoch logs and the stop signals.
- `distribute.py`: scale-out on tf.distribute and keras.distribution.
- `environment.py`: what a run records about the code and the machine.

May import every other subpackage. Only `start` may be imported before the backend is chosen (it does not
load Keras); the others load it at their top.
"""
