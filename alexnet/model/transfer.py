"""Starting from trained weights: copying them into a new model, and freezing its feature extractor.

    kept, new = initialize(model, source_file)   # every layer whose weights' shapes match keeps them
    frozen = freeze(model, "features")           # the convolutions (and their batch norms) stay as they came
"""

import re

import keras

from alexnet.errors import AlexnetError

_FEATURES = re.compile(r"(conv|bn|lrn)\d+$")  # the feature extractor's layers, by the builders' names


def initialize(model, source_file, skip=()):
    """Copies into `model` the weights of every layer of the .keras model at `source_file` that has the same name
    and the same weight shapes, except those named in `skip`; the others keep their fresh initialization.

    Returns:
        (kept, new): names of the layers with weights that were copied, and of those that were not.
    """
    import alexnet.model.layers  # noqa: F401  (registers the custom layers for deserialization)

    try:
        source = keras.saving.load_model(source_file, compile=False)
    except Exception as error:  # Keras raises many types for truncated or foreign files
        raise AlexnetError(f"cannot load {source_file} to start from ({type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else 'no detail'})") from error
    theirs = {layer.name: layer for layer in source.layers}
    kept, new = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        other = theirs.get(layer.name) if layer.name not in skip else None
        values = other.get_weights() if other is not None else []
        if [tuple(w.shape) for w in values] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(values)
            kept.append(layer.name)
        else:
            new.append(layer.name)
    return kept, new


def freeze(model, part):
    """Makes the layers of `part` ("features": the convolutions and their normalization; "none") untrainable, before
    the model is compiled. A frozen BatchNormalization runs in inference mode (Keras 3), as the Keras
    transfer-learning guide asks. Returns the names of the frozen layers with weights."""
    if part == "none":
        return []
    frozen = [layer for layer in model.layers if _FEATURES.match(layer.name)]
    for layer in frozen:
        layer.trainable = False
    return [layer.name for layer in frozen if layer.weights]


def describe(kept, new, model):
    """One line: what was kept and what is new, with parameter counts."""
    def count(names):
        return sum(model.get_layer(name).count_params() for name in names)

    line = f"kept {', '.join(kept) or 'nothing'} ({count(kept):,} parameters)"
    if new:
        line += f"; new: {', '.join(new)} ({count(new):,} parameters, "
        line += (f"{model.output_shape[-1]} classes)" if "predictions" in new else "freshly initialized)")
    return line
