"""The input pipeline: how images reach `fit`, `evaluate` and `predict`, as uint8 batches.

One 2x2 matrix: arrays in memory or files streamed from disk, by tf.data (TensorFlow) or by a PyDataset /
Grain (JAX, PyTorch).

- `order.py`: which rows each process reads, and in what order (one rule for every engine and process).
- `arrays.py`: in-memory uint8 arrays as batches (tf.data, or `ArrayBatches`).
- `streams.py`: streamed files: `Transform` (how a file becomes an image), skipped files, the engine choice.
- `tf_engine.py`: streaming on TensorFlow (tf.data reads, decodes and crops in the graph).
- `grain_engine.py`: streaming on JAX and PyTorch (Grain workers decode with PIL; no TensorFlow).
- `feed.py`: what a run's `fit` reads: the training, validation and test data of a `training.trainer.Job`.

May import: `alexnet.errors`, `alexnet.settings`, `alexnet.data`. Only `arrays`, `tf_engine` and `feed` load a
backend at their top; `grain_engine` is imported by Grain's worker processes and must stay backend-free.
"""
