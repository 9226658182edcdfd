"""The one settings object of a training run. Its recipe owns the defaults of the settings it sets."""

import dataclasses
from typing import Optional

from alexnet.errors import UsageError
from alexnet.model.sources import describe as describe_source
from alexnet.settings import choices, recipes


@dataclasses.dataclass
class TrainConfig:
    """Every setting of `alexnet train`; written, resolved, to the run folder's config.json.

    The settings a recipe sets (`recipes.RECIPE_FIELDS`: epochs, batch_size,
    lr, image_size, tta, ten_crop, pca_lighting, ema) are None unless given: None means "the recipe's",
    however the config is built (`TrainConfig(recipe="cpu")`, `from_flags`,
    `dataclasses.replace`). `resolved()` fills them in; a run trains with that. A run that starts from
    trained weights (`init_from`) takes its model and image size from them unless given.
    """

    data: str = "cifar10"  # "cifar10" (keras.datasets) or a folder / archive path
    model: Optional[str] = None  # one of choices.MODELS; None: --init-from's, else "alexnet"
    recipe: str = "tutorial"  # one of choices.RECIPE_NAMES: "tutorial", "fast" (GPU), "cpu" (settings/recipes.py)
    epochs: Optional[int] = None  # full passes over the training split; None: the recipe's
    batch_size: Optional[int] = None  # images per step and replica; None: the recipe's
    lr: Optional[float] = None  # peak SGD learning rate; None: the recipe's rule for the batch size
    image_size: Optional[int] = None  # side of the square images the convolutions see (pixels); None: the recipe's
    tta: Optional[bool] = None  # the final report also gives test-time-augmented figures; None: the recipe's
    ten_crop: Optional[bool] = None  # the final report also gives the paper's 10-crop figures; None: the recipe's
    pca_lighting: Optional[float] = None  # std of the paper's PCA lighting noise (0: none); None: the recipe's
    ema: Optional[float] = None  # final weights averaged over this fraction of the last steps (0: none); the recipe's
    val_size: Optional[int] = None  # held-out training images (0: none); None: splits.VAL_SIZE_RULE
    seed: int = 42  # splits, shuffling, initialization and dropout
    limit_train: Optional[int] = None  # cap on training images, after validation is taken out
    limit_test: Optional[int] = None  # cap on test images (a seeded random sample)
    storage_size: Optional[tuple] = None  # (height, width) of stored images; None: the source's own
    strict: bool = False  # unreadable image files are an error instead of skipped
    stream: Optional[bool] = None  # image folders: stream from disk; None: when the decoded images would not fit
    run_dir: Optional[str] = None  # the run's folder; None: runs/<timestamp>-<model>
    overwrite: bool = False  # allow --run-dir to name a folder that holds another run
    backend: Optional[str] = None  # Keras backend; None: $KERAS_BACKEND, else tensorflow
    jit: Optional[bool] = None  # XLA compilation; None: chosen for the hardware
    mixed_precision: Optional[bool] = None  # bfloat16/float16 compute; None: chosen for the hardware
    strategy: str = "auto"  # one of choices.STRATEGIES
    test_each_epoch: bool = False  # also log test accuracy per epoch (benchmarks only: never select on it)
    checkpoint_every: float = 30.0  # minutes of training between mid-epoch checkpoints; 0: only when stopped
    checkpoint_gap: float = 60.0  # fewest seconds of training between epoch checkpoints (the last always); 0: each
    init_from: Optional[str] = None  # a run folder or .keras file whose weights the run starts from
    freeze: str = "none"  # one of choices.FREEZE: "features" keeps the convolutional layers as they came

    def __post_init__(self):
        recipes.get(self.recipe)  # an unknown recipe fails at once: the other settings' defaults depend on it

    @classmethod
    def from_flags(cls, given):
        """Builds a config from the flags a user gave ({field: value}); the recipe fills the rest when resolved."""
        return cls.from_dict(given)

    def resolved(self):
        """A copy with every setting left to the recipe filled from it; the learning rate follows its batch size.

        With `init_from`, the model and the image size left out are those of the weights (read from the file).
        """
        recipe = recipes.get(self.recipe)
        filled = {**recipe.defaults(self.batch_size), "model": choices.DEFAULT_MODEL}
        if self.init_from is not None and (self.model is None or self.image_size is None):
            source = describe_source(self.init_from)
            if self.model not in (None, source.model):
                raise UsageError(f"--model {self.model}: --init-from {self.init_from} holds a {source.model} model; "
                                 "a run starts from weights of its own architecture (leave --model out)")
            filled.update(model=source.model, image_size=source.image_size)
        return dataclasses.replace(self, **{name: filled[name] for name in (*recipes.RECIPE_FIELDS, "model")
                                            if getattr(self, name) is None})

    def validate(self):
        """Checks what needs no data (on the resolved settings); raises UsageError naming the flag and the value.

        Returns:
            The resolved config.
        """
        config = self.resolved()  # also checks the recipe's name
        choices.check("--model", config.model, choices.MODELS)
        choices.check("--freeze", config.freeze, choices.FREEZE)
        if config.init_from is None and (config.freeze != "none" or config.image_size is None):
            raise UsageError("--freeze features keeps trained convolutional layers: give --init-from MODEL_OR_RUN"
                             if config.freeze != "none" else
                             f"--recipe {config.recipe} fine-tunes trained weights: give --init-from MODEL_OR_RUN "
                             "(a run folder or a .keras file, such as one from alexnet import-weights)")
        if config.init_from is not None and describe_source(config.init_from).model != config.model:
            raise UsageError(f"--model {config.model}: --init-from {config.init_from} holds a "
                             f"{describe_source(config.init_from).model} model; a run starts from weights of its own "
                             "architecture (leave --model out)")
        choices.check("--strategy", config.strategy, choices.STRATEGIES)
        if config.backend is not None:
            choices.check("--backend", config.backend, choices.BACKENDS)
        for name, flag in choices.POSITIVE.items():
            choices.check_positive(flag, getattr(config, name))
        if config.val_size is not None and not 0 <= config.val_size:
            raise UsageError(f"--val-size must be 0 (no validation: train on every training image) or a positive "
                             f"integer. Received: {config.val_size}")
        if config.run_dir is not None and not str(config.run_dir).strip():
            raise UsageError("--run-dir must name a folder. Received: an empty name")
        choices.check_image_size(config.image_size, model=config.model)
        if not 0 <= config.checkpoint_every < float("inf"):
            raise UsageError(f"--checkpoint-every must be 0 (only when stopped) or a positive number of minutes. "
                             f"Received: {config.checkpoint_every}")
        if not 0 <= config.checkpoint_gap < float("inf"):
            raise UsageError(f"--checkpoint-gap must be 0 (a checkpoint every epoch) or a positive number of seconds. "
                             f"Received: {config.checkpoint_gap}")
        if not 0 <= config.pca_lighting < float("inf"):
            raise UsageError(f"--pca-lighting must be 0 (none) or a positive number. Received: {config.pca_lighting}")
        if not 0 <= config.ema <= 1:
            raise UsageError(f"--ema must be a fraction of the run's steps from 0 (no average) to 1. "
                             f"Received: {config.ema}")
        if config.storage_size is not None and (len(config.storage_size) != 2 or min(config.storage_size) < 1):
            raise UsageError(f"--storage-size must be N or HxW with positive sides. Received: {config.storage_size}")
        return config

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from {field: value} (config.json's settings, flags), refusing unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown settings {unknown}; known: {sorted(known)}")
        values = dict(values)
        if values.get("storage_size") is not None:
            values["storage_size"] = tuple(values["storage_size"])
        return cls(**values)
