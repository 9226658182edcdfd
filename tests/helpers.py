"""Helpers shared by the tests."""

import tensorflow as tf


def event_steps(log_dir, tag):
    """The steps at which the TensorBoard event files in log_dir hold `tag`, in file order."""
    steps = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps
