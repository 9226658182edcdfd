"""The one settings object of a training run, with the tutorial's defaults."""

import dataclasses
from typing import Optional

from alexnet.architecture import VARIANTS, feature_map_size, min_image_size
from alexnet.errors import UsageError


@dataclasses.dataclass
class TrainConfig:
    """Every setting of `alexnet train`; written to the run folder's config.json."""

    data: str = "cifar10"  # "cifar10" (keras.datasets) or a folder / archive path
    model: str = "alexnet"  # "alexnet" or "alexnet-lrn"
    epochs: int = 50  # full passes over the training split
    batch_size: int = 32  # images per step
    lr: float = 0.001  # SGD learning rate
    image_size: int = 227  # side of the square images the convolutions see (pixels)
    val_size: Optional[int] = None  # held-out training images; None: 5,000, or limit_train / 9
    seed: int = 42  # splits, shuffling, initialization and dropout
    limit_train: Optional[int] = None  # cap on training images, after validation is taken out
    limit_test: Optional[int] = None  # cap on test images (a seeded random sample)
    storage_size: Optional[tuple] = None  # (height, width) of stored images; None: the source's own
    strict: bool = False  # unreadable image files are an error instead of skipped
    run_dir: Optional[str] = None  # the run's folder; None: runs/<timestamp>-<model>
    overwrite: bool = False  # allow --run-dir to name a folder that holds another run
    recipe: str = "tutorial"  # "tutorial" (its settings), "fast" (GPU) or "cpu" (see alexnet/recipes.py)
    backend: Optional[str] = None  # Keras backend; None: $KERAS_BACKEND, else tensorflow
    jit: Optional[bool] = None  # XLA compilation; None: chosen for the hardware
    mixed_precision: Optional[bool] = None  # bfloat16/float16 compute; None: chosen for the hardware
    strategy: str = "auto"  # auto, none, mirrored, multiworker (TensorFlow), data-parallel (JAX)
    test_each_epoch: bool = False  # also log test accuracy per epoch (benchmarks only: never select on it)
    tta: bool = False  # the final report also gives test-time-augmented figures (image and mirror averaged)

    @classmethod
    def from_flags(cls, given):
        """Builds a config from the flags a user gave: the recipe's defaults fill the rest.

        Without --lr, the learning rate follows the recipe's rule for the batch size.
        """
        from alexnet import recipes

        recipe = recipes.get(given.get("recipe", cls.recipe))
        values = {**recipe.defaults(), **given}
        values.setdefault("lr", recipe.default_lr(values.get("batch_size", cls.batch_size)))
        return cls(**values)

    def validate(self):
        """Checks ranges that need no data; raises UsageError naming the flag and the value."""
        if self.model not in VARIANTS:
            raise UsageError(f"--model must be one of {', '.join(VARIANTS)}. Received: {self.model!r}")
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size),
                            ("--val-size", self.val_size), ("--limit-train", self.limit_train),
                            ("--limit-test", self.limit_test)):
            if value is not None and value <= 0:
                raise UsageError(f"{flag} must be a positive integer. Received: {value}")
        from alexnet.backend import BACKENDS
        from alexnet import recipes

        recipes.get(self.recipe)  # raises UsageError for an unknown name
        if self.backend is not None and self.backend not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}. Received: {self.backend!r}")
        from alexnet.distribute import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}. Received: {self.strategy!r}")
        if self.run_dir is not None and not str(self.run_dir).strip():
            raise UsageError("--run-dir must name a folder. Received: an empty name")
        if not self.lr > 0:
            raise UsageError(f"--lr must be a positive number. Received: {self.lr}")
        if feature_map_size(self.image_size) < 1:
            raise UsageError(f"--image-size {self.image_size} is too small for {self.model}: "
                             f"the smallest that works is {min_image_size()}.")
        if self.storage_size is not None and (len(self.storage_size) != 2 or min(self.storage_size) < 1):
            raise UsageError(f"--storage-size must be N or HxW with positive sides. Received: {self.storage_size}")
        return self

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from config.json's settings, refusing unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown settings {unknown}; known: {sorted(known)}")
        values = dict(values)
        if values.get("storage_size") is not None:
            values["storage_size"] = tuple(values["storage_size"])
        return cls(**values)
