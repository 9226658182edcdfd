"""Streaming files: both engines (tf.data and Grain) read what alexnet.pipeline.order says, skip what fails, crop as told."""

import importlib.util
import math
import os

import numpy as np
import pytest
from data_helpers import write_png_bomb
from PIL import Image

from alexnet.data import FileIndex
from alexnet.data.images import too_large
from alexnet.errors import AlexnetError, UsageError
from alexnet.pipeline import order, streams
from alexnet.pipeline.feed import Epochs, Feed
from alexnet.settings.recipes import Crop

ENGINES = ["tf", "grain"]


@pytest.fixture(autouse=True)
def _grain_in_process(monkeypatch):
    monkeypatch.setenv("ALEXNET_STREAM_WORKERS", "0")  # Grain's worker processes are tested end to end


def _engine(name):
    if importlib.util.find_spec("tensorflow" if name == "tf" else "grain") is None:
        pytest.skip(f"{name} is not installed")
    if name == "tf":
        from alexnet.pipeline import tf_engine

        return tf_engine
    from alexnet.pipeline import grain_engine

    return grain_engine


def _folder(root, count=37, size=(30, 40)):
    """count small JPEG files (one PNG among them); returns their FileIndex (stored at 16x16)."""
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        name = f"c{i % 3}/{i:03d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name, format="PNG" if i == 5 else "JPEG", quality=90)
        names.append(os.fsencode(name))
    return FileIndex(root, np.array(names), (16, 16))


def _read(stream, batches):
    """(labels, weights) of the first `batches` batches."""
    labels, weights = [], []
    for _, (images, y, w) in zip(range(batches), stream):
        labels.append(np.asarray(y))
        weights.append(np.asarray(w))
    return np.concatenate(labels), np.concatenate(weights)


@pytest.mark.parametrize("engine", ENGINES)
def test_two_processes_read_each_file_once_per_epoch(engine, tmp_path):
    index = _folder(tmp_path)
    n, global_batch = len(index), 8
    steps = order.steps_per_epoch(n, global_batch)
    read = {}
    for process in (0, 1):
        feed = Feed(global_batch, (process, 2), seed=3, transform=streams.Transform((16, 16)),
                    skips=streams.SkippedFiles())
        stream = _engine(engine).training_stream(index, np.arange(n), feed, Epochs(0, 2))
        labels, weights = _read(stream, 2 * steps)  # the labels are the rows: what this process read
        assert weights.tolist() == [1.0] * len(weights)
        read[process] = labels.reshape(2, -1)
    for epoch in (0, 1):
        together = np.concatenate([read[0][epoch], read[1][epoch]])
        assert len(set(together.tolist())) == steps * global_batch  # disjoint
        np.testing.assert_array_equal(np.sort(together), np.sort(order.permutation(n, 3, epoch)[:steps * global_batch]))
        np.testing.assert_array_equal(read[1][epoch], order.epoch_rows(n, global_batch, 3, epoch, (1, 2)))


@pytest.mark.parametrize("engine", ENGINES)
def test_evaluation_reads_every_file_once_with_the_padding_weighted_0(engine, tmp_path):
    index = _folder(tmp_path, count=11)
    feed = Feed(4, replicas=2, num_classes=3, transform=streams.Transform((16, 16)), skips=streams.SkippedFiles())
    stream = _engine(engine).evaluation_stream(index, np.arange(11) % 3, feed)
    labels, weights = _read(stream, order.evaluation_steps(11, 4, 2))
    assert weights.tolist() == [1.0] * 11 + [0.0]  # 11 files, padded to 12 for 2 replicas
    assert labels.shape == (12, 3)  # one-hot


@pytest.mark.parametrize("engine", ENGINES)
def test_a_file_broken_or_deleted_mid_run_is_named_counted_and_skipped(engine, tmp_path, capsys):
    index = _folder(tmp_path, count=24)
    (tmp_path / os.fsdecode(index.paths[4])).write_bytes(b"\xff\xd8\xff not a jpeg after all")
    (tmp_path / os.fsdecode(index.paths[9])).unlink()  # deleted after the listing
    skips = streams.SkippedFiles()
    feed = Feed(8, transform=streams.Transform((16, 16)), skips=skips)
    stream = _engine(engine).training_stream(index, np.arange(24), feed, Epochs(0, 1))
    labels, weights = _read(stream, order.steps_per_epoch(24, 8) + 1)  # into the slack epoch
    err = capsys.readouterr().err
    assert skips.counts[0] == 2 and skips.rows[0] == {4, 9}
    assert f"skipped {index.path(4)}" in err and f"skipped {index.path(9)}" in err
    kept = labels[weights > 0]
    assert 4 not in kept[:22] and 9 not in kept[:22] and len(set(kept[:22].tolist())) == 22  # the others, once


@pytest.mark.parametrize("engine", ENGINES)
def test_strict_makes_an_unreadable_file_an_error_that_names_it(engine, tmp_path):
    index = _folder(tmp_path, count=8)
    (tmp_path / os.fsdecode(index.paths[2])).write_bytes(b"")
    feed = Feed(8, transform=streams.Transform((16, 16)), skips=streams.SkippedFiles(strict=True))
    stream = _engine(engine).evaluation_stream(index, np.arange(8), feed)
    with pytest.raises(Exception) as caught:
        _read(stream, 1)
    assert streams.STRICT_MARK in str(caught.value) and str(index.path(2)) in str(caught.value)
    message = streams.strict_message(str(caught.value))
    assert message.startswith(f"cannot read {index.path(2)}") and message.endswith(streams.STRICT_MARK)
    if engine == "grain":
        assert isinstance(caught.value, AlexnetError)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("crop", ["random-resized", "center"])
def test_crops_give_the_models_input_size(engine, crop, tmp_path):
    index = _folder(tmp_path, count=6, size=(120, 90))
    transform = streams.Transform((32, 32), crop, flip=crop == "random-resized")
    make = _engine(engine)
    feed = Feed(3, seed=1, transform=transform, skips=streams.SkippedFiles())
    if crop == "center":
        stream = make.evaluation_stream(index, np.arange(6), feed)
    else:
        stream = make.training_stream(index, np.arange(6), feed, Epochs(0, 1))
    images, _, _ = next(iter(stream))
    assert np.asarray(images).shape == (3, 32, 32, 3) and np.asarray(images).dtype == np.uint8


def test_both_engines_take_the_same_centre_crop(tmp_path):
    """The evaluation crop is a fixed rule, so tf.data and PIL agree up to their resampling filters."""
    _engine("tf")
    from alexnet.pipeline.grain_engine import decode_transformed

    index = _folder(tmp_path, count=3, size=(90, 120))
    transform = streams.Transform((24, 24), "center")
    stream = _engine("tf").evaluation_stream(index, np.arange(3), Feed(3, transform=transform,
                                                                       skips=streams.SkippedFiles()))
    from_tf = np.asarray(next(iter(stream))[0], np.float64)
    from_pil = np.stack([decode_transformed(index.path(i), transform) for i in range(3)]).astype(np.float64)
    assert np.abs(from_tf - from_pil).mean() < 12  # the same region (a shifted crop of noise differs by ~85)
    mirrored = decode_transformed(index.path(0), streams.Transform((24, 24), "center", mirror=True))
    np.testing.assert_array_equal(mirrored, from_pil[0, :, ::-1].astype(np.uint8))


def test_random_resized_boxes_keep_to_the_area_and_ratio():
    from alexnet.pipeline.grain_engine import center_box, random_resized_box

    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(50, 600, 2))
        top, left, h, w = random_resized_box(height, width, rng, Crop())
        assert 0 <= top <= height - h and 0 <= left <= width - w
        fallback = (h, w) in ((height, width), (height, round(height * 4 / 3)), (round(width * 3 / 4), width))
        if not fallback:
            assert 0.08 - 0.02 <= h * w / (height * width) <= 1.0
            assert math.log(3 / 4) - 0.05 <= math.log(w / h) <= math.log(4 / 3) + 0.05
    assert center_box(300, 400, Crop().center) == (19, 69, 262, 262)  # 0.875 of the shorter side, centred


@pytest.mark.parametrize("engine", ENGINES)
def test_a_mid_epoch_resume_reads_the_rows_an_uninterrupted_stream_reads_next(engine, tmp_path):
    index = _folder(tmp_path, count=24)
    make = _engine(engine)
    def labels(first_epoch, first_step, batches):
        feed = Feed(4, seed=5, transform=streams.Transform((16, 16)), skips=streams.SkippedFiles())
        stream = make.training_stream(index, np.arange(24), feed, Epochs(first_epoch, 2, first_step))
        return _read(stream, batches)[0].tolist()

    whole = labels(0, 0, 12)  # two epochs of 6 steps
    assert whole[24:] == order.permutation(24, 5, 1).tolist()
    assert labels(1, 2, 4) == whole[24 + 8:]  # epoch 2 from its third step on


@pytest.mark.parametrize("engine", ENGINES)
def test_a_decompression_bomb_is_skipped_and_named_before_it_is_decoded(engine, tmp_path, capsys):
    index = _folder(tmp_path, count=6)
    bomb = write_png_bomb(tmp_path / os.fsdecode(index.paths[2]))  # 400 million pixels claimed, 1.2 GB decoded
    assert too_large(bomb) and not too_large(index.path(0))
    skips = streams.SkippedFiles()
    stream = _engine(engine).evaluation_stream(index, np.arange(6), Feed(6, transform=streams.Transform((16, 16)),
                                                                         skips=skips))
    labels, weights = _read(stream, 1)
    assert skips.counts[-1] == 1 and f"skipped {index.path(2)}" in capsys.readouterr().err
    assert sorted(labels[weights > 0].tolist()) == [0, 1, 3, 4, 5]


def test_streaming_without_grain_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grain" else real(name, *a))
    for backend in ("jax", "torch"):
        with pytest.raises(UsageError, match=rf'needs Grain, which is not installed: pip install "alexnet\[{backend}\]" '
                                             r"\(or pip install grain\), or stream with --backend tensorflow"):
            streams.engine(backend)
