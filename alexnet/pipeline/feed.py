"""What a run's `fit` reads: seeded array batches of in-memory splits, or streams of files on disk."""

from alexnet.pipeline import order, streams
from alexnet.pipeline.arrays import ArrayBatches, make_dataset, training_batches


def fit_data(job, first, last, first_step=0):
    """(training, validation, test data, fit's extra arguments) of a `trainer.Job` fitting epochs first..last-1,
    the first from step `first_step` on.

    Epoch e reads the order an uninterrupted run would (`alexnet.pipeline.order`), whatever
    came before: a resumed run, at an epoch's end or mid-way, reads what it would
    have. Streams for a streamed run, else array batches; fit is told the steps
    of each epoch (the first has `first_step` fewer). The test data only with
    --test-each-epoch; the validation data None with --val-size 0.
    """
    config, splits, shard, replicas = job.config, job.splits, job.distribution.shard, job.distribution.replicas
    classes = job.one_hot_classes
    steps = {"steps_per_epoch": job.steps_per_epoch - first_step}
    validate = len(splits.x_val) > 0
    if job.streamed:
        train, evaluation = job.transforms
        common = dict(shard=shard, transform=evaluation, num_classes=classes, skips=job.skips)
        if validate:  # known lengths: Keras would otherwise read to the end once and warn that the data ran out
            steps["validation_steps"] = order.evaluation_steps(len(splits.x_val), job.global_batch, replicas)
        return (streams.training_stream(splits.x_train, splits.y_train, job.global_batch, seed=config.seed,
                                          first_epoch=first, epochs=last, first_step=first_step,
                                          **{**common, "transform": train}),
                streams.evaluation_stream(splits.x_val, splits.y_val, job.global_batch, replicas=replicas, **common)
                if validate else None,
                streams.evaluation_stream(splits.x_test, splits.y_test, job.global_batch, replicas=replicas,
                                            **common),
                steps)
    train = training_batches(splits.x_train, splits.y_train, job.global_batch, seed=config.seed, first_epoch=first,
                             epochs=last, first_step=first_step, num_classes=classes, shard=shard, replicas=replicas)
    common = dict(num_classes=classes, shard=shard, replicas=replicas)
    return (train, make_dataset(splits.x_val, splits.y_val, job.global_batch, **common) if validate else None,
            make_dataset(splits.x_test, splits.y_test, job.global_batch, **common) if config.test_each_epoch else None,
            steps if not isinstance(train, ArrayBatches) else {})  # a PyDataset knows its length
