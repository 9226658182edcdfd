"""After training: test figures, reports, predictions, exports and pictures of a trained model.

- `loading.py`: which model a command means (a run folder or a .keras file), and loading it.
- `inference.py`: a model's class probabilities over images in memory or streamed, plain, mirrored or over
  the paper's ten crops.
- `report.py`: the evaluation report (report.json, report.md, confusion.png, mistakes.png).
- `evaluation.py`: `alexnet evaluate`: a saved model on its run's test split or on other data.
- `prediction.py`: `alexnet predict`: the top classes of image files and folders, as a table (CSV, JSON),
  with Grad-CAM overlays (`--explain`).
- `inspection.py`: `alexnet inspect`: filters.png, neighbours.png, gradcam.png (the paper's Figures 3 and 4).
- `gradcam.py`: Grad-CAM heat maps, with the one function that takes gradients on each backend.
- `pictures.py`: the figures of `inspect` (the kernel grid, top-5 bars and neighbours, heat-map overlays).
- `exporting.py`: `alexnet export`: SavedModel, ONNX and TFLite, checked against the Keras model.
- `plots.py`: the pictures (samples, training curves), written as PNG files.

May import: `alexnet.settings`, `alexnet.model`, `alexnet.data` and `alexnet.pipeline`, never `alexnet.training`
(training writes its report through this package). Nothing here loads Keras at import time: each command
loads it once the backend is chosen.
"""
