"""Which rows each process reads, and in what order: the same numbers for tf.data and Grain, on every process.

Training reads, epoch by epoch, a seeded permutation of the rows, cut to whole
global batches (the remainder, fewer than one global batch, waits for another
epoch's permutation). This is the one steps-per-epoch rule, for arrays in
memory and streamed files alike: every training step has the same shape, so a
compiled step is compiled once, and every device gets the same share. Global batch j is rows [j*B, (j+1)*B) of the epoch's
permutation, and process p of N reads its block [p*B/N, (p+1)*B/N) of it: so the
N processes read disjoint rows, together every row of the cut permutation
once, and each global batch is the processes' blocks in process order, which is
what `keras.distribution.DataParallel` expects of per-process data.

The permutation depends only on (seed, epoch), so a resumed run reads the
epochs it has left in the order an uninterrupted run would have.

Evaluation reads every row once, in order, in batches that all have the same
shape, so that an evaluation (and a prediction) compiles once: the batch is
made as even as it can be (`evaluation_batch`: 5,000 rows at a batch of 512 are
10 batches of 500) and the last one is padded with rows marked -1 (weight 0);
each global batch is sharded the same way.
"""

import numpy as np


def permutation(n, seed, epoch):
    """The seeded order of epoch `epoch` over rows 0..n-1."""
    return np.random.default_rng([seed, epoch, 7]).permutation(n)


def steps_per_epoch(n, global_batch):
    """Whole global batches in an epoch of n rows (the trainer refuses a global batch larger than n)."""
    return n // global_batch


def epoch_rows(n, global_batch, seed, epoch, shard=(0, 1)):
    """This process's training rows of one epoch, in the order it reads them.

    Args:
        n: rows in the split (at least global_batch).
        global_batch: rows per step, all processes together (a multiple of the processes).
        seed: the run's seed.
        epoch: the epoch (0-based).
        shard: (this process, processes).

    Returns:
        int64 array of steps_per_epoch(n, global_batch) * global_batch / processes rows.
    """
    index, count = shard
    steps, per_process = steps_per_epoch(n, global_batch), global_batch // count
    blocks = permutation(n, seed, epoch)[:steps * global_batch].reshape(steps, global_batch)
    return np.ascontiguousarray(blocks[:, index * per_process:(index + 1) * per_process]).reshape(-1)


def evaluation_batch(n, global_batch, replicas=1):
    """The global batch of an evaluation of n rows: no larger than `global_batch`, a multiple of the replicas, and
    as even as the fewest batches allow, so that padding the last one to the same size adds few rows."""
    steps = evaluation_steps(n, global_batch)
    rows = -(-n // steps)  # ceil(n / steps): the rows of each batch, were the replicas 1
    return max(1, -(-rows // replicas)) * replicas


def evaluation_steps(n, global_batch, replicas=1):
    """Batches of an evaluation of n rows (at least one)."""
    return max(1, -(-n // global_batch))


def evaluation_rows(n, global_batch, shard=(0, 1), replicas=1):
    """This process's evaluation rows: every row once, in order; -1 marks padding (weight 0).

    The rows come in `evaluation_steps` global batches of `evaluation_batch`
    rows each (a multiple of the replicas, devices of all processes together,
    so that every device gets the same share); the last one is padded to that
    size. Each process reads its block of every global batch.
    """
    index, count = shard
    batch = evaluation_batch(n, global_batch, replicas)
    steps = evaluation_steps(n, global_batch)
    rows = np.concatenate([np.arange(n), np.full(steps * batch - n, -1)]).astype(np.int64).reshape(steps, batch)
    share = batch // count
    return np.ascontiguousarray(rows[:, index * share:(index + 1) * share]).reshape(-1)
