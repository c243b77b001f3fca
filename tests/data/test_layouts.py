"""Every dataset layout, recognised without being told, read into the one Dataset description."""

from __future__ import annotations

import csv
import importlib.machinery
import shutil
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgetl.data.dataset import decode_dataset_subset, write_array_files
from edgetl.data.layouts import LayoutOptions, detect_layout, read_dataset
from edgetl.data.split import SUBSETS, Split
from edgetl.errors import DataError
from edgetl.runtime.image import load_image

OPTIONS = LayoutOptions(validation_fraction=0.2, test_fraction=0.2, seed=5)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    from edgetl.data.sample import write_sample_data

    root = tmp_path_factory.mktemp("layouts") / "digits"
    write_sample_data(root, per_class=6)
    return root


def class_files(digits: Path) -> dict[str, list[Path]]:
    return {folder.name: sorted(folder.iterdir()) for folder in sorted(digits.iterdir())}


def test_class_folders(digits):
    dataset = read_dataset(str(digits), "auto", OPTIONS)
    assert dataset.layout == "folder" and len(dataset.class_names) == 10
    assert sum(dataset.counts().values()) == 60
    assert set(Counter(e.label for e in dataset.split.test)) == set(range(10))


@pytest.mark.parametrize("validation_folder", ["valid", "validation", "val", None])
def test_presplit_folders_keep_the_given_split(digits, tmp_path, validation_folder):
    root = tmp_path / "presplit"
    plan = {"train": slice(0, 4), validation_folder: slice(4, 5), "test": slice(5, 6)}
    for name, files in class_files(digits).items():
        for subset, part in plan.items():
            if subset is None:
                continue
            (root / subset / name).mkdir(parents=True)
            for file in files[part]:
                shutil.copy(file, root / subset / name / file.name)
    dataset = read_dataset(str(root), "auto", OPTIONS)
    assert dataset.layout == "presplit"
    assert all(e.path.parent.parent.name == "test" for e in dataset.split.test) and len(dataset.split.test) == 10
    if validation_folder is None:  # carved from train/, one per class
        assert dataset.counts() == {"train": 30, "validation": 10, "test": 10}
        assert all(e.path.parent.parent.name == "train" for e in dataset.split.validation)
    else:
        assert dataset.counts() == {"train": 40, "validation": 10, "test": 10}
        assert {e.path.parent.parent.name for e in dataset.split.validation} == {validation_folder}
    # labels follow the class names, not folder order within each subset
    for example in dataset.split.validation + dataset.split.test:
        assert dataset.class_names[example.label] == example.path.parent.name
    restored = Split.from_json(dataset.split.to_json(), "split.json")
    assert restored.test == dataset.split.test


def write_kaggle(digits: Path, root: Path, with_extension: bool, label_column: str = "breed") -> list[str]:
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()  # Kaggle's unlabelled test images: loose files
    rows = []
    for name, files in class_files(digits).items():
        for file in files:
            image_id = f"{name}_{file.stem}"
            shutil.copy(file, root / "train" / f"{image_id}.png")
            rows.append((f"{image_id}.png" if with_extension else image_id, name))
    shutil.copy(files[0], root / "test" / "unlabelled.png")
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", label_column])
        writer.writerows(rows)
    return [row[0] for row in rows]


@pytest.mark.parametrize("with_extension", [False, True])
def test_kaggle_labels_csv(digits, tmp_path, with_extension):
    root = tmp_path / "dogs"
    write_kaggle(digits, root, with_extension)
    dataset = read_dataset(str(root), "auto", OPTIONS)
    assert dataset.layout == "csv" and len(dataset.class_names) == 10
    assert sum(dataset.counts().values()) == 60
    for example in dataset.split.train:
        assert example.path.is_file() and example.path.parent == root / "train"
        assert example.path.name.startswith(dataset.class_names[example.label] + "_")


def test_csv_overrides_and_refusals(digits, tmp_path):
    root = tmp_path / "custom"
    write_kaggle(digits, root, with_extension=False, label_column="what")
    (root / "train").rename(root / "pictures")
    options = LayoutOptions(seed=5, id_column="id", label_column="what", images="pictures")
    assert read_dataset(str(root / "labels.csv"), "csv", options).counts()["test"] == 10
    with pytest.raises(DataError, match="no column 'kind'"):
        read_dataset(str(root), "csv", LayoutOptions(label_column="kind", images="pictures"))
    with pytest.raises(DataError, match="outside the data folder"):
        read_dataset(str(root), "csv", LayoutOptions(images="../.."))
    with open(root / "labels.csv", "a") as handle:
        handle.write("../../outside.png,zero\n")
    with pytest.raises(DataError, match="'../../outside.png' points outside the data folder"):
        read_dataset(str(root), "csv", options)


def test_npz_with_one_hot_labels_and_class_names(digits, tmp_path):
    files = class_files(digits)
    names = list(files)
    images = {"train": [], "test": []}
    labels = {"train": [], "test": []}
    for label, name in enumerate(names):
        for index, file in enumerate(files[name]):
            subset = "test" if index == 5 else "train"
            images[subset].append(load_image(file, (20, 20))[..., 0])  # grayscale (n, h, w)
            labels[subset].append(label)
    path = tmp_path / "digits.npz"
    np.savez(
        path,
        X_train=np.stack(images["train"]),
        y_train=np.eye(10)[labels["train"]],  # one-hot
        X_test=np.stack(images["test"]).astype(np.float32) / 255.0,  # 0-1 floats
        y_test=np.asarray(labels["test"]),
        class_names=np.asarray(names),
    )
    dataset = read_dataset(str(path), "auto", OPTIONS)
    assert dataset.layout == "npz" and dataset.class_names == names
    assert dataset.counts() == {"train": 40, "validation": 10, "test": 10}
    decoded = decode_dataset_subset(dataset, "test", 32)
    assert decoded.pixels.shape == (10, 32, 32, 3) and decoded.pixels.dtype == np.uint8
    assert list(decoded.labels) == list(range(10))
    # The run gets the test images and a stratified training sample as PNG files that decode to the same pixels.
    split = write_array_files(dataset, tmp_path / "run" / "data", seed=5, calibration=20)
    assert len(split.test) == 10 and len(split.train) == 20 and split.validation == []
    assert Counter(e.label for e in split.train[:10]) == Counter(range(10))
    for example, pixels in zip(split.test, decoded.pixels, strict=True):
        assert example.path.is_file() and example.path.parent.name == names[example.label]
        np.testing.assert_array_equal(load_image(example.path, (32, 32)), pixels)
    with pytest.raises(DataError, match="lacks X_test, y_test"):
        np.savez(tmp_path / "bad.npz", X_train=np.zeros((2, 4, 4)), y_train=np.zeros(2))
        read_dataset(str(tmp_path / "bad.npz"), "auto", OPTIONS)


def test_tfds_without_the_package_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # not importable, whatever is installed
    with pytest.raises(DataError) as caught:
        read_dataset("tfds:tf_flowers", "auto", OPTIONS)
    assert "pip install tensorflow-datasets" in str(caught.value) and "\n" not in str(caught.value)


def test_tfds_images_come_through_with_a_carved_split(monkeypatch):
    rng = np.random.default_rng(0)
    examples = [(rng.integers(0, 255, (10 + i % 3, 12, 3), dtype=np.uint8), i % 3) for i in range(30)]
    fake = types.ModuleType("tensorflow_datasets")
    fake.__spec__ = importlib.machinery.ModuleSpec("tensorflow_datasets", None)
    label = types.SimpleNamespace(names=["daisy", "rose", "tulip"])
    fake.load = lambda name, **kwargs: ({"train": examples}, types.SimpleNamespace(features={"label": label}))
    fake.as_numpy = lambda split: split
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    dataset = read_dataset("tfds:tf_flowers", "auto", OPTIONS)
    assert dataset.layout == "tfds" and dataset.class_names == ["daisy", "rose", "tulip"]
    counts = dataset.counts()
    assert sum(counts.values()) == 30 and counts["test"] == 6 and counts["validation"] == 6
    assert decode_dataset_subset(dataset, "train", 16).pixels.shape == (counts["train"], 16, 16, 3)


def test_detection(digits, tmp_path):
    assert detect_layout("tfds:mnist") == "tfds"
    assert detect_layout(str(digits)) == "folder"
    stray = tmp_path / "with-notes"
    shutil.copytree(digits, stray)
    (stray / "notes.csv").write_text("a,b\n")
    assert detect_layout(str(stray)) == "folder"  # a stray CSV among class folders is not a labels file
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not .npz or .csv"):
        detect_layout(str(tmp_path / "x.txt"))
    assert set(SUBSETS) == {"train", "validation", "test"}
