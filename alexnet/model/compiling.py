"""A recipe made into Keras objects: a model compiled with its optimizer, schedule, loss and metrics, and the
augmentation layer it trains with. The recipes themselves are data (`alexnet.settings.recipes`)."""

import keras

from alexnet.model.layers import Augment
from alexnet.settings import recipes


def augmentation(name, seed, in_pipeline=False, pca_lighting=0.0, colour_basis=None):
    """The training-only augmentation layer a recipe puts in the model, or None.

    Args:
        name: the recipe.
        seed: the run's seed.
        in_pipeline: the input pipeline already crops and flips (a streamed "random-resized" recipe).
        pca_lighting: std of the PCA lighting noise (0: none).
        colour_basis: (eigenvalues, eigenvectors) of the training pixels (`layers.colour_basis`), for lighting.
    """
    recipe = recipes.get(name)
    shift, flip = (0.0, False) if in_pipeline else (recipe.shift, recipe.flip)
    if not (shift or flip or pca_lighting):
        return None
    eigenvalues, eigenvectors = colour_basis if pca_lighting else (None, None)
    return Augment(shift, flip, seed=seed, lighting=pca_lighting, eigenvalues=eigenvalues, eigenvectors=eigenvectors,
                   name="augment", dtype="float32")


def learning_rate(recipe, lr, total_steps, steps_per_epoch):
    """The learning rate, or its schedule over `total_steps`, for a recipe peaking at `lr`."""
    if recipe.lr_drops:  # steps: lr, lr/10, lr/100, ... at the given fractions of the run
        boundaries = [max(1, round(fraction * total_steps)) for fraction in recipe.lr_drops]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [lr / 10 ** k for k in range(len(boundaries) + 1)])
    if not (recipe.warmup_epochs or recipe.cosine):
        return lr
    warmup = min(total_steps - 1, round(recipe.warmup_epochs * steps_per_epoch))
    if not recipe.cosine:
        return keras.optimizers.schedules.CosineDecay(  # warm-up, then constant (alpha=1: no decay)
            initial_learning_rate=lr / 10, decay_steps=1, alpha=1.0, warmup_target=lr, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr / 10, decay_steps=max(1, total_steps - warmup), alpha=0.0,
        warmup_target=lr, warmup_steps=warmup)


def compile_model(model, config, steps_per_epoch, jit=False, lr=None):
    """Compiles a model with the optimizer, loss and metric of `config.recipe`.

    Args:
        model: the model to compile.
        config: the run's TrainConfig (recipe, epochs, learning rate; the recipe's where left at None).
        steps_per_epoch: optimizer steps in one epoch (the schedule spans epochs x steps).
        jit: XLA compilation.
        lr: the peak learning rate, if not config.lr (several replicas scale it).
    """
    config = config.resolved()
    recipe = recipes.get(config.recipe)
    total = max(1, config.epochs * steps_per_epoch)
    peak = config.lr if lr is None else lr
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate(recipe, peak, total, steps_per_epoch),
                                     momentum=recipe.momentum, nesterov=recipe.nesterov,
                                     weight_decay=recipe.weight_decay or None, use_ema=bool(config.ema),
                                     ema_momentum=ema_momentum(config.ema, total) if config.ema else 0.99)
    if config.ema:
        # `fit` puts the average in place of the weights at the end of every call, and a resumed epoch is a call
        # of its own: training would go on from the average. The trainer puts it in place once (`use_average`).
        # Under mixed_float16 the LossScaleOptimizer that `compile` wraps around it calls this one's.
        optimizer.finalize_variable_values = lambda var_list: None
    if recipe.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if recipe.one_hot:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"),
                   keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy")]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                   keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy")]
    if not recipes.logs_top_k(model.output_shape[-1]):  # top-5 of 5 classes or fewer is always 1
        metrics = metrics[:1]
    # Weighted metrics: evaluation batches padded for several devices carry weight 0 on the copies.
    model.compile(optimizer=optimizer, loss=loss, weighted_metrics=metrics, jit_compile=jit)
    return model


def ema_momentum(fraction, total_steps):
    """The momentum of an exponential moving average whose 1/e horizon is `fraction` of `total_steps`."""
    return 1 - 1 / max(1.0, fraction * total_steps)


def use_average(model):
    """Puts the optimizer's moving average of the weights (if it keeps one) in place of the trained weights."""
    # Under mixed_float16, `compile` wraps the SGD in a LossScaleOptimizer, which keeps no average of its own
    # (its use_ema is False); the SGD inside keeps it.
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    if optimizer is not None and optimizer.use_ema:
        type(optimizer).finalize_variable_values(optimizer, model.trainable_variables)
