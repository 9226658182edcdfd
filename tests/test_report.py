import keras
import numpy as np
import pytest

from alexnet.results.inference import tta_probabilities
from alexnet.results.report import (LabelledImages, ReportOptions, classification_metrics, metrics_from_report,
                                    summary_lines, write_report)


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
    from alexnet.results.inference import predict_probabilities

    # A model that is not mirror-symmetric: softmax over the first row's 4 pixels (channel 0).
    inputs = keras.Input((4, 4, 3), dtype="uint8")
    outputs = keras.layers.Softmax()(keras.ops.cast(inputs[:, 0, :, 0], "float32") / 64)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    plain = predict_probabilities(model, images, batch_size=4)
    mirrored = predict_probabilities(model, np.ascontiguousarray(images[:, :, ::-1]), batch_size=4)
    assert not np.allclose(plain, mirrored)
    np.testing.assert_allclose(predict_probabilities(model, images, batch_size=4, mirror=True), mirrored)
    np.testing.assert_allclose(tta_probabilities(model, images, plain, batch_size=4), (plain + mirrored) / 2,
                               rtol=1e-6)


def test_a_report_with_test_time_augmentation_predicts_each_image_twice_not_three_times(tmp_path):
    inputs = keras.Input((4, 4, 3), dtype="uint8")
    model = keras.Model(inputs, keras.layers.Softmax()(keras.ops.cast(inputs[:, 0, :, 0], "float32") / 64))
    calls = []
    real = model.predict
    model.predict = lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs)
    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    report = write_report(model, LabelledImages(images, np.array([0, 1, 2, 3, 0, 1]), list("abcd")), tmp_path,
                          ReportOptions(tta=True))
    assert len(calls) == 2  # the images, then their mirrors
    expected = (real(images, verbose=0) + real(np.ascontiguousarray(images[:, :, ::-1]), verbose=0)) / 2
    assert report["tta"]["top1_accuracy"] == pytest.approx(np.mean(expected.argmax(1) == [0, 1, 2, 3, 0, 1]))


@pytest.mark.parametrize("classes,k", [(2, 2), (3, 3), (5, 5), (10, 5)])
def test_top_k_is_named_and_never_null_whatever_the_number_of_classes(classes, k):
    rng = np.random.default_rng(classes)
    report = classification_metrics(rng.dirichlet(np.ones(classes), size=20), rng.integers(0, classes, 20),
                                    [str(i) for i in range(classes)])
    assert report["top_k"] == k and 0 <= report[f"top{k}_accuracy"] <= 1
    metrics = metrics_from_report(report, epochs=1)  # what metrics.json holds
    assert metrics["top_k"] == k and metrics[f"test_top{k}_accuracy"] == report[f"top{k}_accuracy"]
    assert None not in metrics.values()
    assert summary_lines(report)[0].startswith(f"Test accuracy {report['top1_accuracy']:.4f}, top-{k} ")


def test_ten_crop_equals_the_mean_of_the_ten_crops_computed_by_hand():
    from alexnet.model.builders import alexnet
    from alexnet.results.inference import ten_crop_probabilities

    model = alexnet(input_shape=(40, 40, 3), num_classes=4, image_size=67)
    image = np.random.default_rng(8).integers(0, 256, size=(1, 40, 40, 3), dtype=np.uint8)
    averaged = ten_crop_probabilities(model, image, batch_size=10)
    assert averaged.shape == (1, 4)
    side = 35  # 0.875 of 40, at the corners and the centre, each resized back to 40 and mirrored
    crops = [image[0, t:t + side, s:s + side] for t, s in ((0, 0), (0, 5), (5, 0), (5, 5), (2, 2))]
    crops += [crop[:, ::-1] for crop in crops]
    resized = keras.ops.image.resize(np.stack(crops).astype("float32"), (40, 40), antialias=True)
    resized = np.clip(np.round(keras.ops.convert_to_numpy(resized)), 0, 255).astype(np.uint8)
    by_hand = keras.ops.convert_to_numpy(model(resized)).mean(axis=0)
    np.testing.assert_allclose(averaged[0], by_hand, rtol=1e-5, atol=1e-6)


def test_many_classes_show_the_most_frequent_confusions_not_the_matrix(tmp_path):
    from alexnet.results.report import confusion_figure, top_confusions

    names = [f"class {i}" for i in range(30)]
    confusion = np.eye(30, dtype=int) * 5
    confusion[3, 7], confusion[8, 1], confusion[2, 2] = 4, 9, 50
    assert top_confusions(confusion, names)[:2] == [("class 8", "class 1", 9), ("class 3", "class 7", 4)]
    assert len(top_confusions(confusion, names)) == 2  # correct predictions are no confusion
    figure = confusion_figure(confusion, names)
    assert "most frequent confusions" in figure.axes[0].get_title()


def test_ten_crop_of_a_streamed_split_crops_the_central_square_the_centre_crop_comes_from(monkeypatch):
    """As the paper: 224 crops of the 256x256 centre; here 67 crops of the round(67 / 0.875) = 77 square."""
    from alexnet.data import FileIndex
    from alexnet.model.builders import alexnet
    from alexnet.pipeline import streams
    from alexnet.results import inference
    from alexnet.settings.recipes import Crop

    index = FileIndex(".", np.array([b"a.jpg"]), (67, 67))
    images = inference.StreamedImages(index, streams.Transform((67, 67), "center"))
    seen = {}

    def fake_predict(model, streamed, batch_size):
        seen.update(transform=streamed.transform, input_shape=model.input_shape, crop=model.get_layer("ten_crop").crop)
        return np.zeros((1, 3)), np.arange(1)

    monkeypatch.setattr(inference, "predict_probabilities", fake_predict)
    inference.ten_crop_probabilities(alexnet(input_shape=(67, 67, 3), num_classes=3, image_size=67), images)
    assert seen["transform"] == streams.Transform((77, 77), "center", geometry=Crop(center=1.0))
    assert seen["input_shape"] == (None, 77, 77, 3) and seen["crop"] == (67, 67)
