"""What a run's `fit` reads: seeded array batches of in-memory splits, or streams of files on disk."""

from alexnet import order, streaming
from alexnet.pipeline import make_dataset


def fit_data(job, done):
    """(training, validation, test data, fit's extra arguments) of a `trainer.Job` that has done `done` epochs.

    Streams for a streamed run (reading whole global batches, so fit is told the
    steps), else array batches; the test data only with --test-each-epoch.
    """
    config, splits, shard, replicas = job.config, job.splits, job.distribution.shard, job.distribution.replicas
    classes = job.one_hot_classes
    if job.streamed:
        train, evaluation = job.transforms
        common = dict(shard=shard, transform=evaluation, num_classes=classes, skips=job.skips)
        return (streaming.training_stream(splits.x_train, splits.y_train, job.global_batch, seed=config.seed,
                                          first_epoch=done, epochs=config.epochs, **{**common, "transform": train}),
                streaming.evaluation_stream(splits.x_val, splits.y_val, job.global_batch, replicas=replicas, **common),
                streaming.evaluation_stream(splits.x_test, splits.y_test, job.global_batch, replicas=replicas,
                                            **common),
                # Known lengths: Keras would otherwise read to the end once and warn that the data ran out.
                {"steps_per_epoch": job.steps_per_epoch,
                 "validation_steps": order.evaluation_steps(len(splits.x_val), job.global_batch, replicas)})
    # A resumed run shuffles with another seed, so it does not replay the first epochs' orders.
    train = make_dataset(splits.x_train, splits.y_train, job.global_batch, shuffle=True, seed=config.seed + done,
                         num_classes=classes, shard=shard, replicas=replicas)
    common = dict(num_classes=classes, shard=shard, replicas=replicas)
    return (train, make_dataset(splits.x_val, splits.y_val, job.global_batch, **common),
            make_dataset(splits.x_test, splits.y_test, job.global_batch, **common) if config.test_each_epoch else None,
            {})
