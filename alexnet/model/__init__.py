"""The network: AlexNet's geometry, its custom layers, the builders, and how a model is compiled.

- `architecture.py`: the variants (ours, with LRN, torchvision's) and their geometry as data (no Keras; the
  CLI reads it).
- `layers.py`: the layers Keras does not ship (standardization, ImageNet normalization, resize, LRN,
  augmentation, adaptive pooling, the model card), registered under the package name `alexnet` so
  that saved `.keras` files load wherever the code moved.
- `ten_crop.py`: the paper's 10-crop test as two layers, for the test report (never in a saved model).
- `builders.py`: `alexnet`, `alexnet_lrn`, `alexnet_torchvision` and `build_model`: pure functions returning
  functional models.
- `compiling.py`: a recipe made into Keras objects: the optimizer, schedule, loss and metrics a model is
  compiled with, and the augmentation layer it trains with.
- `sources.py`: a trained model to start from (`--init-from`), described from its file without Keras.
- `transfer.py`: its weights copied into a new model (layers whose shapes match), and freezing the features.
- `importing.py`: `alexnet import-weights`: torchvision's AlexNet state dict converted into a .keras model;
  `imagenet_classes.txt`, ImageNet's 1000 class names in torchvision's order, is its data.

May import: `alexnet.settings`. `layers`, `ten_crop`, `builders`, `compiling`, `transfer` and `importing` import Keras:
only once the backend is chosen.
"""
