"""AlexNet on CIFAR-10 with Keras 3: the public Python API.

    from alexnet import TrainConfig, train, evaluate, predict
    run = train(TrainConfig(data="cifar10", recipe="cpu"))         # a run folder, as `alexnet train` writes
    evaluate(run.run_dir)["top1_accuracy"]                           # its test split, report files beside it
    predict(run.run_dir, ["cat.jpg"])                                 # top classes of any image files
    import_weights("alexnet-owt-7be5be79.pth", "imagenet.keras")      # torchvision's ImageNet weights
    train(TrainConfig(data="my_photos/", recipe="finetune", init_from="imagenet.keras", freeze="features"))

Importing the package is cheap: each name below is imported when it is
first used (a module `__getattr__`), and Keras loads only with the first
name that needs it. `train` and `resume` choose the Keras backend before
Keras loads (`TrainConfig(backend="jax")`); to build models on another
backend than TensorFlow, set KERAS_BACKEND before the first such call.
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it. Modules are named for what they do (training, evaluation, ...),
# never like a function here, so that importing a module cannot hide the function of the same name.
_API = {
    "TrainConfig": "alexnet.settings.config",
    "train": "alexnet.training.start",
    "resume": "alexnet.training.start",
    "Run": "alexnet.training.start",
    "evaluate": "alexnet.results.evaluation",
    "predict": "alexnet.results.prediction",
    "inspect": "alexnet.results.inspection",
    "export": "alexnet.results.exporting",
    "load_dataset": "alexnet.data",
    "Dataset": "alexnet.data",
    "load_splits": "alexnet.data.splits",
    "Splits": "alexnet.data.splits",
    "build_model": "alexnet.model.builders",
    "alexnet": "alexnet.model.builders",
    "alexnet_lrn": "alexnet.model.builders",
    "alexnet_torchvision": "alexnet.model.builders",
    "import_weights": "alexnet.model.importing",
    "AlexnetError": "alexnet.errors",
    "UsageError": "alexnet.errors",
}
__all__ = sorted(_API)


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'alexnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
