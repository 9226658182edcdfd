"""After training: test figures, reports, predictions, exports and pictures of a trained model.

- `evaluation.py`: `alexnet evaluate`: a saved model on its run's test split or on other data.
- `report.py`: the evaluation report (report.json, report.md, confusion.png, mistakes.png).
- `prediction.py`: `alexnet predict`: the top classes of image files.
- `exporting.py`: `alexnet export`: SavedModel, ONNX and TFLite, checked against the Keras model.
- `plots.py`: the pictures (samples, training curves), written as PNG files.

May import `alexnet.settings`, `alexnet.model`, `alexnet.data` and `alexnet.pipeline`, never `alexnet.training`.
Nothing here loads Keras at import time: each command loads it once the backend is chosen.
"""
