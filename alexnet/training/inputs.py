"""What a run's `fit` reads: seeded array batches of in-memory splits, or streams of files on disk."""

import dataclasses

from alexnet.pipeline import streams
from alexnet.pipeline.arrays import ArrayBatches, EpochOrder, evaluation_batches, training_batches


def fit_data(job, epochs):
    """(training, validation, test data, fit's extra arguments, the callbacks the data needs) of a `job.Job`
    fitting `epochs` (a `feed.Epochs`).

    Epoch e reads the order an uninterrupted run would (`alexnet.pipeline.order`),
    whatever came before: a resumed run, at an epoch's end or mid-way, reads what
    it would have. Streams for a streamed run, else array batches; fit is told
    the steps of each epoch (the first has `epochs.first_step` fewer). The test
    data only with --test-each-epoch; the validation data None with --val-size 0.
    """
    splits, feed = job.splits, job.feed
    steps = {"steps_per_epoch": job.steps_per_epoch - epochs.first_step}
    validate = len(splits.x_val) > 0
    if job.streamed:
        if validate:  # known lengths: Keras would otherwise read to the end once and warn that the data ran out
            steps["validation_steps"] = feed.evaluation_steps(len(splits.x_val))
        train_feed = dataclasses.replace(feed, transform=job.transforms[0])
        return (streams.training_stream(splits.x_train, splits.y_train, train_feed, epochs),
                streams.evaluation_stream(splits.x_val, splits.y_val, feed) if validate else None,
                streams.evaluation_stream(splits.x_test, splits.y_test, feed),
                steps, [])
    train = training_batches(splits.x_train, splits.y_train, feed, epochs)
    arrays = isinstance(train, ArrayBatches)  # a PyDataset knows its length, and is told where epochs begin
    return (train, evaluation_batches(splits.x_val, splits.y_val, feed) if validate else None,
            evaluation_batches(splits.x_test, splits.y_test, feed) if job.config.test_each_epoch else None,
            {} if arrays else steps, [EpochOrder(train)] if arrays else [])
