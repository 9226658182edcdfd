import numpy as np
import pytest

from alexnet.report import classification_metrics


def test_metrics_of_a_known_case():
    # 4 images, 3 classes; predictions: 0->0, 0->1, 1->1, 2->1.
    probabilities = np.array([
        [0.7, 0.2, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.8, 0.1],
        [0.1, 0.5, 0.4],
    ])
    metrics = classification_metrics(probabilities, np.array([0, 0, 1, 2]), ["a", "b", "c"])
    assert metrics["top1_accuracy"] == 0.5
    assert metrics["top3_accuracy"] == 1.0  # top-k is capped at the number of classes
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert metrics["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert metrics["per_class"]["b"] == pytest.approx({"precision": 1 / 3, "recall": 1.0, "f1": 0.5, "support": 1})
    assert metrics["per_class"]["c"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert metrics["test_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.8, 0.4])))


def test_top5_with_ten_classes():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(10), size=200)
    labels = rng.integers(0, 10, size=200)
    metrics = classification_metrics(probabilities, labels, [str(i) for i in range(10)])
    in_top5 = [label in np.argsort(-p)[:5] for p, label in zip(probabilities, labels)]
    assert metrics["top5_accuracy"] == pytest.approx(np.mean(in_top5))


def test_test_time_augmentation_averages_an_image_and_its_mirror():
    import keras

    from alexnet.report import predict_probabilities

    # A model that is not mirror-symmetric: softmax over the first row's 4 pixels (channel 0).
    inputs = keras.Input((4, 4, 3), dtype="uint8")
    outputs = keras.layers.Softmax()(keras.ops.cast(inputs[:, 0, :, 0], "float32") / 64)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    plain = predict_probabilities(model, images, batch_size=4)
    mirrored = predict_probabilities(model, images[:, :, ::-1], batch_size=4)
    averaged = predict_probabilities(model, images, batch_size=4, tta=True)
    assert not np.allclose(plain, mirrored)
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, rtol=1e-6)
