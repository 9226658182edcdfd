"""Settings: what a run is asked to do, as data. Nothing here loads Keras.

- `config.py`: `TrainConfig`, the one settings object of a run (written to config.json).
- `choices.py`: the registry of allowed values (models, recipes, backends, strategies, export formats) and
  the rules of numeric settings, which argparse and `TrainConfig.validate` both read.
- `recipes.py`: each recipe (`tutorial`, `fast`, `cpu`, `imagenet`) as a `Recipe` value: its defaults, its
  optimizer and schedule, its augmentation and crop geometry.

May import: `alexnet.errors`, `alexnet.model.architecture` (Keras-free geometry). The CLI reads this package
before the backend is chosen, so no module here imports Keras at its top.
"""
