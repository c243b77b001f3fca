"""The streaming input pipeline: the pixels it yields are `edgetl classify`'s, whichever cache holds them; bad
files are skipped once; every epoch sees every image once, in a new order; array layouts are read in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.data.dataset import ArrayImages, Dataset, choose_cache, decode_dataset_subset, stream_dataset_subset
from edgetl.data.folder import Example
from edgetl.data.layouts import LayoutOptions, read_dataset
from edgetl.data.pipeline import RecordFile, check_subset, decode_subset, to_dataset
from edgetl.runtime.image import load_image

SIZE = 24


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Example]:
    """JPEGs, PNGs (one greyscale, one with alpha) of other sizes than the model's, and one broken file."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    examples = []
    for index in range(11):
        pixels = rng.integers(0, 256, (30 + index, 41 - index, 3), dtype=np.uint8)
        picture = Image.fromarray(pixels)
        if index == 3:
            picture = picture.convert("L")
        if index == 4:
            picture = picture.convert("RGBA")
        path = folder / f"{index:02d}.{'jpg' if index % 2 else 'png'}"
        picture.save(path)
        examples.append(Example(path, index % 3))
    broken = folder / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    examples.insert(5, Example(broken, 1))
    return examples


def batches(dataset) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = zip(*((x.numpy(), y.numpy()) for x, y in dataset), strict=True)
    return np.concatenate(pixels), np.concatenate(labels)


@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_pipeline_pixels_are_what_classify_decodes(photos, tmp_path, cache, caplog):
    subset = check_subset(photos, SIZE, cache, tmp_path / "cache" / "train.pixels", what="train images")
    assert len(subset.skipped) == 1 and str(subset.skipped[0]).startswith(f"{photos[5].path}: cannot be decoded")
    assert "broken.jpg" in caplog.text
    good = [example for example in photos if example.path.name != "broken.jpg"]
    assert [example.path for example in subset.examples] == [example.path for example in good]
    pixels, labels = batches(to_dataset(subset, batch_size=4))
    assert pixels.dtype == np.float32 and pixels.shape == (len(good), SIZE, SIZE, 3)
    expected = np.stack([load_image(example.path, (SIZE, SIZE)) for example in good])
    np.testing.assert_array_equal(pixels, expected.astype(np.float32))
    assert list(labels) == [example.label for example in good]
    assert (tmp_path / "cache" / "train.pixels").exists() == (cache == "disk")


def test_each_epoch_sees_every_image_once_in_a_new_order(photos, tmp_path):
    subset = check_subset(photos, SIZE, "disk", tmp_path / "train.pixels")
    dataset = to_dataset(subset, batch_size=3, shuffle_seed=1)
    reference = {bytes(subset.read(np.asarray([i]))[0]): i for i in range(len(subset.labels))}
    orders = []
    for _ in range(2):
        pixels, labels = batches(dataset)
        order = [reference[bytes(image.astype(np.uint8))] for image in pixels]
        assert sorted(order) == list(range(len(subset.labels)))
        assert list(labels) == [subset.labels[i] for i in order]
        orders.append(order)
    assert orders[0] != orders[1] and orders[0] != sorted(orders[0])


def test_record_file_reads_back_any_rows(tmp_path):
    rows = np.random.default_rng(2).random((10, 3, 2)).astype(np.float32)
    records = RecordFile(tmp_path / "deep" / "rows.f32", (3, 2), np.float32)
    records.append(rows[:4])
    records.append(rows[4:])
    assert len(records) == 10 and (tmp_path / "deep" / "rows.f32").stat().st_size == rows.nbytes
    np.testing.assert_array_equal(records.read(np.asarray([9, 0, 4, 4])), rows[[9, 0, 4, 4]])


def test_a_record_file_in_a_temporary_file_reads_back_by_slices_and_indices_as_an_array_does():
    images = np.random.default_rng(3).integers(0, 256, (9, 5, 4, 3), dtype=np.uint8)
    spilled = RecordFile(None, (5, 4, 3), np.uint8)
    spilled.append(images[:4])
    np.testing.assert_array_equal(spilled[0:4], images[:4])  # readable as soon as written
    spilled.append(images[4:])
    assert len(spilled) == 9 and spilled.shape == (9, 5, 4, 3) and spilled.path is None
    np.testing.assert_array_equal(spilled[2:7], images[2:7])
    np.testing.assert_array_equal(spilled[7:20], images[7:])  # a slice past the end stops there, as an array's
    np.testing.assert_array_equal(spilled[np.asarray([8, 0, 3, 3])], images[[8, 0, 3, 3]])
    np.testing.assert_array_equal(np.asarray(spilled, np.float32), images.astype(np.float32))
    with pytest.raises(IndexError):
        spilled[np.asarray([9])]


def test_a_spilled_subset_holds_its_pixels_in_a_file_and_reads_what_memory_would(photos):
    in_memory = decode_subset(photos, SIZE)
    spilled = decode_subset(photos, SIZE, spill=True)
    assert isinstance(spilled.pixels, RecordFile) and isinstance(in_memory.pixels, np.ndarray)
    assert len(spilled.pixels) == len(in_memory.pixels) == len(photos) - 1  # the broken file is skipped
    np.testing.assert_array_equal(spilled.pixels[0 : len(photos)], in_memory.pixels)
    np.testing.assert_array_equal(spilled.read(np.asarray([3, 1])), in_memory.read(np.asarray([3, 1])))
    assert [e.path for e in spilled.examples] == [e.path for e in in_memory.examples]


def test_auto_cache_keeps_small_sets_in_memory_and_large_ones_on_disk(photos, monkeypatch):
    from edgetl.data import dataset as dataset_module
    from edgetl.data.split import Split

    split = Split(Path("."), ["a", "b", "c"], photos[:8], photos[8:10], photos[10:])
    files = Dataset("folder", "photos", ["a", "b", "c"], split=split)
    decoded_bytes = len(photos) * SIZE * SIZE * 3
    monkeypatch.setattr(dataset_module, "MEMORY_CACHE_BYTES", decoded_bytes)
    assert choose_cache("auto", files, SIZE) == "memory"
    monkeypatch.setattr(dataset_module, "MEMORY_CACHE_BYTES", decoded_bytes - 1)
    assert choose_cache("auto", files, SIZE) == "disk"
    assert choose_cache("none", files, SIZE) == "none"
    arrays = Dataset("npz", "x.npz", ["a"], arrays={"train": ArrayImages(np.zeros((1, 4, 4, 3), np.uint8), [0])})
    assert choose_cache("auto", arrays, SIZE) == "none"
    # Arrays are read where they are: no pixel file is written for "disk", and the run says so.
    assert choose_cache("disk", arrays, SIZE) == "none" and choose_cache("memory", arrays, SIZE) == "memory"


def test_array_layout_streams_from_its_arrays_without_a_copy(tmp_path):
    rng = np.random.default_rng(3)
    np.savez(
        tmp_path / "arrays.npz",
        X_train=rng.integers(0, 256, (30, 20, 20, 3), dtype=np.uint8),
        y_train=np.arange(30) % 3,
        X_test=rng.integers(0, 256, (6, 20, 20, 3), dtype=np.uint8),
        y_test=np.arange(6) % 3,
    )
    dataset = read_dataset(str(tmp_path / "arrays.npz"), "auto", LayoutOptions(validation_fraction=0.2, seed=1))
    in_memory = decode_dataset_subset(dataset, "train", 32)
    streamed = stream_dataset_subset(dataset, "train", 32, "none")
    assert not hasattr(streamed, "pixels")  # nothing but the layout's own arrays holds the images
    pixels, labels = batches(to_dataset(streamed, batch_size=7))
    np.testing.assert_array_equal(pixels, in_memory.pixels.astype(np.float32))
    np.testing.assert_array_equal(labels, in_memory.labels)
    # A worker's shard: every second image from its index on.
    shard = stream_dataset_subset(dataset, "train", 32, "none", shard=(1, 2))
    np.testing.assert_array_equal(shard.read(np.arange(len(shard.labels))), in_memory.pixels[1::2])
    np.testing.assert_array_equal(shard.labels, in_memory.labels[1::2])
