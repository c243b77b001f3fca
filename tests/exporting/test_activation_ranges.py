"""Percentile calibration of the converter's int8 TFLite: exact cuts, ranges only ever narrowed, the input's pinned
range left alone, and a file LiteRT runs."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.exporting.activation_ranges import _Tails

SIZE = 16


def test_tails_find_the_exact_cut_however_the_values_arrive():
    rng = np.random.default_rng(0)
    values = rng.standard_normal(100_000).astype(np.float32)
    values[:7] = [50, 40, 30, -60, -45, 20, 10]  # rare extremes
    keep = 5  # cut the 4 most extreme values off each side: the range ends at the 5th largest / smallest
    tails = _Tails(keep)
    for chunk in np.array_split(rng.permutation(values), 13):
        tails.add(chunk, chunk.min(), chunk.max())
    ordered = np.sort(values)
    assert tails.range() == (float(ordered[keep - 1]), float(ordered[-keep]))
    assert tails.range()[1] == 10.0 and -45.0 < tails.range()[0] < 0.0


def test_tails_hold_only_their_own_values_not_the_batch_they_came_from():
    """A tail is an array of its own, `keep` values long: a view into the partitioned copy of a batch would keep
    the whole batch alive (on an Xception, twice one image's activations, to the end of the measurement)."""
    values = np.random.default_rng(2).standard_normal(1_000_000).astype(np.float32)
    tails = _Tails(100)
    tails.add(values, values.min(), values.max())
    for tail in (tails.high, tails.low):
        assert tail.size == 100 and tail.base is None and tail.nbytes == 400
    ordered = np.sort(values)
    assert tails.range() == (float(ordered[99]), float(ordered[-100]))


def test_tails_of_a_relu_output_whose_batches_mostly_cannot_move_the_cut():
    # Most batches neither go below the low tail's zeros nor above the high tail's cut: they are skipped whole, and
    # the cut is still the exact one over all values.
    rng = np.random.default_rng(1)
    values = np.maximum(rng.standard_normal(60_000).astype(np.float32), 0.0)
    values[[100, 30_000, 59_000]] = [9.0, 8.0, 7.0]
    tails = _Tails(2)
    for chunk in np.array_split(values, 30):
        tails.add(chunk, chunk.min(), chunk.max())
    assert tails.range() == (0.0, 8.0)
    assert np.all(tails.low == 0.0)


def test_a_range_always_holds_zero():
    tails = _Tails(1)
    tails.add(np.array([2.0, 3.0, 5.0], np.float32), 2.0, 5.0)
    assert tails.range() == (0.0, 5.0)


@pytest.fixture(scope="module")
def calibrated_model():
    """A tiny raw-pixel network calibrated by the converter (min-max), with images whose few bright pixels drive
    the first layer's activations far beyond the rest."""
    import keras

    from edgetl.exporting import tflite

    keras.utils.set_random_seed(0)
    pixels = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(pixels)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(pixels, keras.layers.Dense(3, activation="softmax")(x))
    rng = np.random.default_rng(1)
    images = rng.uniform(100, 140, (40, SIZE, SIZE, 3)).astype(np.float32)
    images[::10, 5, 5, :] = 255.0  # a rare saturated spot in a few images
    images[1::10, 9, 9, :] = 0.0
    return model, images, tflite._calibrated(model, images, "minmax")


def ranges(flatbuffer: bytes) -> dict[str, tuple[float, float]]:
    from tensorflow.lite.python import schema_py_generated as schema

    subgraph = schema.Model.GetRootAs(flatbuffer, 0).Subgraphs(0)
    found = {}
    for index in range(subgraph.TensorsLength()):
        tensor = subgraph.Tensors(index)
        quantization = tensor.Quantization()
        if quantization is not None and quantization.MinLength() == 1:
            found[tensor.Name().decode()] = (quantization.Min(0), quantization.Max(0))
    return found


def percentile_ranges(calibrated: bytes, images: np.ndarray, percentile: float) -> bytes:
    """edgetl's percentile ranges at `percentile`, measured on `images`, written into the converter's output."""
    from edgetl.exporting.activation_ranges import tflite_measurement, with_ranges
    from edgetl.exporting.calibration import ImageSample

    stats = tflite_measurement(calibrated, len(images), percentile).over(ImageSample.of(images))
    return with_ranges(calibrated, stats.ranges("percentile"))


def test_percentile_ranges_narrow_the_activations_and_leave_the_input_pinned(calibrated_model):
    from edgetl.exporting.tflite import RAW_PIXEL_RANGE

    model, images, minmax = calibrated_model
    clipped = percentile_ranges(minmax, images, 99.0)
    before, after = ranges(minmax), ranges(clipped)
    assert before.keys() == after.keys() and len(after) >= 3
    input_name = model.inputs[0].name
    pinned = [name for name, value in after.items() if value == RAW_PIXEL_RANGE]
    assert pinned and all(before[name] == RAW_PIXEL_RANGE for name in pinned), input_name
    narrowed = 0
    for name, (low, high) in after.items():
        old_low, old_high = before[name]
        assert old_low <= low < high <= old_high, name  # never widened
        assert low <= max(old_low, 0.0) <= high, name  # zero kept inside where it was
        narrowed += (low, high) != (old_low, old_high)
    assert narrowed >= 1
    # A percentile of 100 cuts nothing off: the ranges are min-max's, up to float rounding.
    uncut = ranges(percentile_ranges(minmax, images, 100.0))
    for name, value in before.items():
        assert uncut[name] == pytest.approx(value, rel=1e-5, abs=1e-30), name


def test_percentile_calibrated_int8_runs_and_tracks_the_float_model(calibrated_model):
    from edgetl.exporting import tflite

    model, images, _ = calibrated_model
    reference = model.predict(images, verbose=0)
    for method in tflite.CALIBRATION_METHODS:
        flatbuffer = tflite.convert_int8(model, images, "uint8", method=method)
        probabilities = tflite._predict(flatbuffer, images)
        assert np.abs(probabilities - reference).max() < 0.1, method
    with pytest.raises(Exception, match="calibration method 'entropy'"):
        tflite.convert_int8(model, images, "uint8", method="entropy")
