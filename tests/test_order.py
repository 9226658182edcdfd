"""order.py: which rows each process reads, epoch by epoch, and in evaluation."""

import numpy as np
import pytest

from alexnet.pipeline import order


@pytest.mark.parametrize("n,global_batch,processes", [(100, 10, 1), (100, 12, 2), (1003, 64, 4), (64, 64, 2)])
def test_processes_read_disjoint_rows_that_cover_each_epoch(n, global_batch, processes):
    steps = order.steps_per_epoch(n, global_batch)
    for epoch in range(3):
        read = [order.epoch_rows(n, global_batch, seed=5, epoch=epoch, shard=(p, processes)) for p in range(processes)]
        assert all(len(rows) == steps * global_batch // processes for rows in read)
        union = np.concatenate(read)
        assert len(set(union.tolist())) == len(union)  # disjoint, no row twice
        assert len(union) == n - n % global_batch  # every row but at most one global batch's remainder
        # each global batch is the processes' blocks in process order: the epoch's permutation, cut
        blocks = np.stack([rows.reshape(steps, -1) for rows in read], axis=1).reshape(-1)
        np.testing.assert_array_equal(blocks, order.permutation(n, 5, epoch)[:steps * global_batch])


def test_each_epoch_has_its_own_seeded_order_that_a_resume_reads_again():
    first, second = (order.epoch_rows(50, 10, seed=1, epoch=e) for e in (0, 1))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, order.epoch_rows(50, 10, seed=1, epoch=1))  # the same after a resume
    assert not np.array_equal(first, order.epoch_rows(50, 10, seed=2, epoch=0))


@pytest.mark.parametrize("n,global_batch,processes,replicas", [(10, 4, 1, 1), (10, 4, 2, 2), (11, 8, 2, 4),
                                                                (3, 8, 1, 2), (5000, 512, 1, 1), (300, 256, 1, 1)])
def test_evaluation_reads_every_row_once_in_batches_of_one_size(n, global_batch, processes, replicas):
    read = [order.evaluation_rows(n, global_batch, (p, processes), replicas) for p in range(processes)]
    union = np.concatenate(read)
    assert sorted(union[union >= 0].tolist()) == list(range(n))
    assert len(set(len(rows) for rows in read)) == 1  # every process the same number of rows
    steps, batch = order.evaluation_steps(n, global_batch, replicas), order.evaluation_batch(n, global_batch, replicas)
    assert steps == -(-n // global_batch) and batch <= global_batch and batch % replicas == 0
    assert len(union) == steps * batch  # every batch the same size: one compile
    assert len(union) - n < steps * replicas  # as even as can be: little padding (5,000 at 512: 10 of 500)
    if processes == 1:  # the padding comes last (predictions are cut there)
        assert (union[n:] == -1).all()