"""`alexnet predict`: the top classes of a trained model for any image files."""

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from alexnet import console
from alexnet.data.layouts import IMAGE_EXTENSIONS
from alexnet.errors import UsageError
from alexnet.files import write_atomic, writing
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


def predict(target, images, top_k=3, batch_size=256, tta=False, explain=None):
    """Predicts the top-k classes of each image file.

    Args:
        target: a run folder (its model.keras) or a .keras file.
        images: image file paths, any format, size or mode, or folders of them (walked, sorted).
        top_k: how many classes to list per image.
        batch_size: files decoded and predicted at a time (memory holds one batch, whatever the folder).
        tta: average each image's probabilities with its mirror's (test-time augmentation).
        explain: a folder to write one Grad-CAM overlay per image into (<name>.png, as the model saw it), or None.

    Returns:
        One dict per file, in order: {"file", "predictions": [{"class", "probability"}, ...]} (and "explanation":
        its overlay's path, with `explain`), or {"file", "error"} for a file that could not be read.

    Raises:
        UsageError: If `target` is neither a run folder nor a model file, the run holds no model yet, or a
            folder holds no image.
        AlexnetError: If the model file cannot be loaded.
    """
    import keras

    from alexnet.model.layers import model_card
    from alexnet.results.inference import tta_probabilities
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
    explanations = _Explanations(explain, model) if explain is not None else None
    bar = keras.utils.Progbar(len(files), unit_name="image", verbose=1) if len(files) > batch_size and \
        console.keras_verbosity() == 1 else None  # a bar on a terminal only
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
            pixels = np.stack(decoded)
            probabilities = np.asarray(model.predict(pixels, verbose=0, batch_size=64), np.float64)
            if tta:
                probabilities = tta_probabilities(model, pixels, probabilities, batch_size=64)
            readable = [result for result in batch if "error" not in result]
            for result, p in zip(readable, probabilities):
                order = np.argsort(-p)[:top_k]
                result["predictions"] = [{"class": names[i], "probability": float(p[i])} for i in order]
            if explanations is not None:
                explanations.write(readable, pixels)
        results += batch
        if bar is not None:
            bar.update(min(len(files), start + batch_size))
    return results


class _Explanations:
    """`predict(explain=DIR)`: one Grad-CAM overlay per image, named after the file (a counter where names repeat)."""

    def __init__(self, folder, model):
        self.folder, self.model, self.used = Path(folder), model, set()
        with writing(self.folder, "write the explanations into"):
            self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, results, pixels):
        from PIL import Image

        from alexnet.results import gradcam

        _, maps = gradcam.heat_maps(self.model, pixels)
        for result, image, heat in zip(results, pixels, maps):
            picture = Image.fromarray(gradcam.overlay(image, heat))
            scale = max(1, -(-224 // min(picture.size)))  # small images enlarged, to be seen
            picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
            stem, n = Path(result["file"]).stem, 1
            while f"{stem}.png" in self.used:
                stem, n = f"{Path(result['file']).stem}-{n}", n + 1
            self.used.add(f"{stem}.png")
            path = self.folder / f"{stem}.png"
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            write_atomic(path, buffer.getvalue())
            result["explanation"] = str(path)


def write_table(results, path):
    """Writes `predict`'s results as CSV (file, class_1, probability_1, ..., error) or JSON, by the suffix."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        write_atomic(path, (json.dumps(results, indent=1) + "\n").encode())
        return
    k = max((len(r.get("predictions", [])) for r in results), default=0)
    columns = ["file", *[f"{what}_{i}" for i in range(1, k + 1) for what in ("class", "probability")], "error"]
    if any("explanation" in r for r in results):
        columns.insert(-1, "explanation")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for r in results:
        ranked = [v for p in r.get("predictions", []) for v in (p["class"], f"{p['probability']:.6f}")]
        ranked += [""] * (2 * k - len(ranked))
        writer.writerow([r["file"], *ranked, *([r.get("explanation", "")] if "explanation" in columns else []),
                         r.get("error", "")])
    write_atomic(path, buffer.getvalue().encode())
