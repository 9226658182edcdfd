"""How one split is fed, as one value: `Feed` (batch, sharding, seed, labels, how a file becomes an image), and
`Epochs` (which part of training a fit reads).

Every engine, arrays or streams, tf.data or Grain, takes the same two values, and
reads its rows from `alexnet.pipeline.order` through them: one rule for the
global batch, the steps of an epoch and each process's share.
Keras-free: Grain's worker processes import the pipeline.
"""

import dataclasses
from typing import Optional

from alexnet.pipeline import order


@dataclasses.dataclass(frozen=True)
class Feed:
    """What every batch of one split is made with."""

    global_batch: int  # images per step, all processes together (per-replica batch x replicas)
    shard: tuple = (0, 1)  # (this process, processes): each reads its block of every global batch
    replicas: int = 1  # devices a global batch is split over: evaluation pads its last batch to a multiple
    seed: int = 0  # the order of each training epoch, and a streamed file's random crop and flip
    num_classes: Optional[int] = None  # labels become one-hot vectors of this many classes (label smoothing)
    transform: Optional[object] = None  # streamed files: how one becomes an image (`streams.Transform`)
    skips: Optional[object] = None  # streamed files: where the unreadable ones are named and counted

    @property
    def batch(self):
        """Images per batch of this process."""
        return self.global_batch // self.shard[1]

    def steps_per_epoch(self, n):
        """Training steps of an epoch of n rows (`order.steps_per_epoch`: whole global batches)."""
        return order.steps_per_epoch(n, self.global_batch)

    def training_rows(self, n, epoch):
        """This process's rows of training epoch `epoch`, in order (`order.epoch_rows`)."""
        return order.epoch_rows(n, self.global_batch, self.seed, epoch, self.shard)

    def for_evaluation(self, n):
        """This feed with the global batch of an evaluation of n rows (`order.evaluation_batch`): every batch of it
        the same size, the last one padded."""
        return dataclasses.replace(self, global_batch=order.evaluation_batch(n, self.global_batch, self.replicas))

    def evaluation_rows(self, n):
        """This process's rows of an evaluation: every row once; -1 marks padding (`order.evaluation_rows`)."""
        return order.evaluation_rows(n, self.global_batch, self.shard, self.replicas)

    def evaluation_steps(self, n):
        return order.evaluation_steps(n, self.global_batch, self.replicas)

    def evaluation_size(self, n):
        """Rows an evaluation of n rows reads, all processes together, padding included."""
        return self.evaluation_steps(n) * self.for_evaluation(n).global_batch


@dataclasses.dataclass(frozen=True)
class Epochs:
    """The training epochs a fit reads: `first` to `stop` - 1, the first from step `first_step` on."""

    first: int = 0  # 0-based
    stop: int = 1  # the epoch to stop before (fit's `epochs`)
    first_step: int = 0  # steps of the first epoch already done (a mid-epoch resume)

    def rows(self, feed, n, epoch):
        """This process's rows of `epoch`, less those of the steps done before a mid-epoch resume."""
        rows = feed.training_rows(n, epoch)
        return rows[self.first_step * feed.batch:] if epoch == self.first else rows
