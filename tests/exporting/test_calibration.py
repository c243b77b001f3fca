"""The calibration set: stratified per class, and refused when it would give a quietly broken int8 file."""

from pathlib import Path

import numpy as np
import pytest

from edgetl.data.folder import Example
from edgetl.data.pipeline import DecodedSubset
from edgetl.errors import DataError
from edgetl.exporting.calibration import check_calibration, stratified_sample
from edgetl.exporting.verify import UNLABELLED

CLASSES = ["cat", "dog", "owl"]


def examples(counts: dict[int, int]) -> list[Example]:
    # Grouped by class on purpose: a plain prefix of this list would be a single class.
    return [Example(Path(f"{label}/{i}.png"), label) for label, count in counts.items() for i in range(count)]


def test_sample_takes_every_class_in_turn():
    pool = examples({0: 50, 1: 50, 2: 4})
    chosen = stratified_sample(pool, 30, seed=1)
    counts = np.bincount([e.label for e in chosen], minlength=3)
    assert len(chosen) == 30 and len(set(chosen)) == 30
    assert counts[2] == 4  # the small class gives all it has
    assert counts[0] == 13 and counts[1] == 13
    assert stratified_sample(pool, 30, seed=1) == chosen  # seeded
    assert len(stratified_sample(pool, 500)) == len(pool)


def subset(labels, low=0, high=255, size=8) -> DecodedSubset:
    rng = np.random.default_rng(0)
    pixels = rng.uniform(low, high, (len(labels), size, size, 3)).astype(np.float32)
    return DecodedSubset(pixels, np.asarray(labels, np.int32), [], [])


def check(calibration, shape=(None, 8, 8, 3)):
    check_calibration(calibration, CLASSES, shape, (0.0, 255.0), "calibration sample")


def test_a_good_sample_passes():
    check(subset([0, 1, 2] * 4))


@pytest.mark.parametrize(
    ("calibration", "shape", "message"),
    [
        (subset([0, 1, 2] * 2), (None, 8, 8, 3), "only 6 calibration image(s)"),
        (subset([0, 1] * 6), (None, 8, 8, 3), "12 image(s) of 2 of the 3 classes, none of owl; add images"),
        (subset([0, 1, 2] * 4, low=-1, high=1), (None, 8, 8, 3), "outside the model's input range"),
        (subset([0, 1, 2] * 4, low=0, high=1), (None, 8, 8, 3), "already-normalised"),
        (subset([0, 1, 2] * 4, size=16), (None, 8, 8, 3), "the model takes (8, 8, 3)"),
    ],
)
def test_a_broken_sample_is_refused(calibration, shape, message):
    with pytest.raises(DataError) as raised:
        check(calibration, shape)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_unlabelled_images_need_no_class_coverage():
    check(subset([UNLABELLED] * 12))
    with pytest.raises(DataError, match="only 6 calibration image"):
        check(subset([UNLABELLED] * 6))


def test_a_plain_folder_calibrates_without_labels_and_class_folders_with_them(tmp_path):
    from PIL import Image

    from edgetl.exporting.source import read_calibration_folder

    labels = ["cat", "dog"]
    for relative in ("day1/a.png", "day1/deeper/b.png", "c.png", ".hidden/d.png"):
        (tmp_path / "plain" / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "plain" / relative)
    plain = read_calibration_folder(tmp_path / "plain", labels, Path("labels.txt"))
    assert sorted(e.path.name for e in plain) == ["a.png", "b.png", "c.png"]
    assert {e.label for e in plain} == {UNLABELLED}
    for relative in ("dog/a.png", "cat/b.png", "cat/c.png"):
        (tmp_path / "classes" / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "classes" / relative)
    labelled = read_calibration_folder(tmp_path / "classes", labels, Path("labels.txt"))
    assert sorted((e.path.name, e.label) for e in labelled) == [("a.png", 1), ("b.png", 0), ("c.png", 0)]
    (tmp_path / "classes" / "owl").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "classes" / "owl" / "d.png")
    with pytest.raises(DataError, match="folder 'owl' is not a class in labels.txt"):
        read_calibration_folder(tmp_path / "classes", labels, Path("labels.txt"))
    with pytest.raises(DataError, match="d.png: not a folder of images"):
        read_calibration_folder(tmp_path / "classes" / "owl" / "d.png", labels, Path("labels.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: holds no image files"):
        read_calibration_folder(tmp_path / "empty", labels, Path("labels.txt"))
