"""`alexnet predict`: the top classes of a trained model for any image files."""

import os
from pathlib import Path

import numpy as np

from alexnet import console
from alexnet.data.layouts import IMAGE_EXTENSIONS
from alexnet.errors import UsageError
from alexnet.pipeline import streams


def class_names_for(home, classes, card=None):
    """Class names from the run folder that holds the model (a RunFolder or None), else from the model's card
    (`layers.ModelCard`), else "0", "1", ..."""
    if home is not None:
        names = home.read_config("read for its class names").get("data", {}).get("class_names")
        if names and len(names) == classes:
            return names
    if card is not None and len(card.class_names) == classes:
        return card.class_names
    return [str(i) for i in range(classes)]


def image_files(paths):
    """The files to predict: each path as given, and each folder as its image files (by extension, recursive,
    sorted). A folder without any is a UsageError."""
    files = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(Path(folder, name) for folder, _, names in os.walk(path) for name in names
                       if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
        if not found:
            raise UsageError(f"{path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        files += found
    return files


def predict(target, images, top_k=3, batch_size=256):
    """Predicts the top-k classes of each image file.

    Args:
        target: a run folder (its model.keras) or a .keras file.
        images: image file paths, any format, size or mode, or folders of them (walked, sorted).
        top_k: how many classes to list per image.
        batch_size: files decoded and predicted at a time (memory holds one batch, whatever the folder).

    Returns:
        One dict per file, in order: {"file", "predictions": [{"class", "probability"}, ...]}
        or {"file", "error"} for a file that could not be read.

    Raises:
        UsageError: If `target` is neither a run folder nor a model file, the run holds no model yet, or a
            folder holds no image.
        AlexnetError: If the model file cannot be loaded.
    """
    from alexnet.model.layers import model_card
    from alexnet.results.loading import load_model, resolve_target

    console.ensure_setup()
    files = image_files(images)
    target = resolve_target(target, "used for predictions")
    model = load_model(target.model_file)
    height, width = model.input_shape[1:3]
    classes = model.output_shape[-1]
    card = model_card(model)
    names = class_names_for(target.home, classes, card)
    stored = target.home.read_config("used for predictions") if target.home is not None else {}
    decode = streams.decoder(stored, (height, width), card.crop if card else "resize")  # as the run read its files
    top_k = max(1, min(top_k, classes))
    results = []
    for start in range(0, len(files), batch_size):
        batch, decoded = [], []
        for file in files[start:start + batch_size]:
            try:
                decoded.append(decode(file))
                batch.append({"file": str(file)})
            except Exception as error:  # PIL raises many types; the other files are still answered
                batch.append({"file": str(file), "error": f"not a readable image ({type(error).__name__}: {error})"})
        if decoded:
            answered = iter(np.asarray(model.predict(np.stack(decoded), verbose=0, batch_size=64)))
            for result in batch:
                if "error" not in result:
                    p = next(answered)
                    order = np.argsort(-p)[:top_k]
                    result["predictions"] = [{"class": names[i], "probability": float(p[i])} for i in order]
        results += batch
    return results
