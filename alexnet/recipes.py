"""Training recipes: how a model is compiled and fed, by name.

- `tutorial` (the default): the tutorial's settings. Plain SGD at 0.001,
  sparse categorical cross-entropy, batch 32, 50 epochs, no augmentation.
- `fast`: the same architecture trained the way fast CIFAR-10 trainers do it.
  On-device augmentation (random translation by up to 4 pixels, the padded
  random crop of the ResNet papers, and horizontal flips), SGD with Nesterov
  momentum 0.9 and decoupled weight decay 5e-4 (not on biases or
  normalization), a linear warm-up then cosine decay, label smoothing 0.1,
  batch 512 with the learning rate scaled linearly (0.05 per 256 images).
"""

import math

RECIPES = ("tutorial", "fast")

# Settings a recipe changes when the user does not give them.
RECIPE_DEFAULTS = {
    "tutorial": {},
    "fast": {"epochs": 30, "batch_size": 512},
}
FAST_LR_PER_256 = 0.05  # peak learning rate per 256 images of batch (linear scaling rule)
FAST_WARMUP_EPOCHS = 2
FAST_MOMENTUM = 0.9
FAST_WEIGHT_DECAY = 5e-4
FAST_LABEL_SMOOTHING = 0.1
FAST_SHIFT = 4 / 32  # random translation, as a fraction of the image side (4 pixels at 32)


def default_lr(recipe, batch_size):
    """The learning rate a recipe uses when --lr is not given."""
    if recipe == "fast":
        return FAST_LR_PER_256 * batch_size / 256
    return 0.001  # the tutorial's


def describe(recipe, batch_size, lr):
    """What the recipe does, for config.json and the console."""
    if recipe == "fast":
        return {"optimizer": f"SGD nesterov momentum {FAST_MOMENTUM}, weight decay {FAST_WEIGHT_DECAY}",
                "schedule": f"linear warm-up {FAST_WARMUP_EPOCHS} epochs to {lr:g}, then cosine decay to 0",
                "lr_rule": f"lr = {FAST_LR_PER_256} x batch / 256 = {default_lr('fast', batch_size):g} "
                           f"at batch {batch_size}",
                "label_smoothing": FAST_LABEL_SMOOTHING,
                "augmentation": "random translation +-4 px (zero = image mean), horizontal flip"}
    return {"optimizer": f"SGD learning rate {lr:g}", "augmentation": "none"}


def augmentation(recipe, seed):
    """The training-only augmentation layers a recipe puts in the model, or None."""
    if recipe != "fast":
        return None
    import keras

    return keras.Sequential([
        keras.layers.RandomTranslation(FAST_SHIFT, FAST_SHIFT, fill_mode="constant", fill_value=0.0,
                                       interpolation="nearest", seed=seed, dtype="float32"),
        keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"),
    ], name="augment")


def uses_one_hot(recipe):
    """Label smoothing needs one-hot labels (Keras's sparse loss has no smoothing)."""
    return recipe == "fast"


def compile_model(model, config, steps_per_epoch, jit=False):
    """Compiles a model with the optimizer, loss and metric of `config.recipe`."""
    import keras

    if config.recipe == "fast":
        total = max(1, config.epochs * steps_per_epoch)
        warmup = min(total - 1, FAST_WARMUP_EPOCHS * steps_per_epoch)
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.lr / 10, decay_steps=max(1, total - warmup), alpha=0.0,
            warmup_target=config.lr, warmup_steps=warmup)
        optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=FAST_MOMENTUM, nesterov=True,
                                         weight_decay=FAST_WEIGHT_DECAY)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=FAST_LABEL_SMOOTHING)
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        optimizer = keras.optimizers.SGD(learning_rate=config.lr)
        loss = keras.losses.SparseCategoricalCrossentropy()
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric], jit_compile=jit)
    return model


def steps_per_epoch(train_images, batch_size):
    return math.ceil(train_images / batch_size)
