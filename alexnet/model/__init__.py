"""The network: AlexNet's geometry, its custom layers, the builders, and how a model is compiled.

- `architecture.py`: the variants and their convolutions' geometry as data (no Keras; the CLI reads it).
- `layers.py`: the layers Keras does not ship (standardization, resize, LRN, augmentation, ten crops),
  registered under the package name `alexnet` so that saved `.keras` files load wherever the code moved.
- `builders.py`: `alexnet`, `alexnet_lrn` and `build_model`: pure functions returning functional models.
- `compiling.py`: a recipe made into Keras objects: the optimizer, schedule, loss and metrics a model is
  compiled with, and the augmentation layer it trains with.

May import: `alexnet.settings`. `layers`, `builders` and `compiling` import Keras: only once the backend is
chosen.
"""
