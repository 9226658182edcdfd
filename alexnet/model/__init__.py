"""The network: AlexNet's geometry, its custom layers, the builders, and how a model is compiled.

- `architecture.py`: the variants and their spatial geometry as data (no Keras; the CLI reads it).
- `layers.py`: the layers Keras does not ship (standardization, resize, LRN, augmentation, ten crops),
  registered under the package name `alexnet` so that saved `.keras` files load wherever they moved.
- `builders.py`: `alexnet`, `alexnet_lrn` and `build_model`: pure functions returning functional models.

May import: `alexnet.errors`, `alexnet.settings`. `layers` and `builders` import Keras: only once the backend
is chosen.
"""
