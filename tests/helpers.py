"""Helpers shared by the tests."""

import keras
import tensorflow as tf


def event_steps(log_dir, tag):
    """The steps at which the TensorBoard event files in log_dir hold `tag`, in file order."""
    steps = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps


def tiny_model(dropout=False):
    """A compiled 3-in, 2-out softmax model (a dropout layer first if asked: it has a random generator)."""
    inputs = keras.Input((3,))
    x = keras.layers.Dropout(0.5)(inputs) if dropout else inputs
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model
