from collections import Counter

import pytest

from edgetl.data.folder import read_class_folders
from edgetl.data.split import Split, stratified_split
from edgetl.errors import DataError


def make_tree(root, counts):
    for name, count in counts.items():
        folder = root / name
        folder.mkdir(parents=True)
        for index in range(count):
            (folder / f"{index}.png").write_bytes(b"x")  # split never decodes
    return root


def test_every_class_in_every_subset_in_proportion(tmp_path):
    images = read_class_folders(make_tree(tmp_path / "d", {"cat": 20, "dog": 40, "fox": 10}))
    split = stratified_split(images, 0.15, 0.15, seed=1)
    assert split.class_names == ["cat", "dog", "fox"]
    for subset in (split.train, split.validation, split.test):
        assert set(Counter(e.label for e in subset)) == {0, 1, 2}
    assert Counter(e.label for e in split.test) == {0: 3, 1: 6, 2: 2}
    everything = split.train + split.validation + split.test
    assert len(everything) == 70 and len({e.path for e in everything}) == 70


def test_split_is_seeded_and_round_trips(tmp_path):
    images = read_class_folders(make_tree(tmp_path / "d", {"a": 12, "b": 12}))
    first = stratified_split(images, 0.2, 0.2, seed=3)
    again = stratified_split(images, 0.2, 0.2, seed=3)
    other = stratified_split(images, 0.2, 0.2, seed=4)
    assert first.test == again.test
    assert first.test != other.test
    restored = Split.from_json(first.to_json(), "split.json")
    assert restored == first


def test_class_with_one_image_is_refused(tmp_path):
    images = read_class_folders(make_tree(tmp_path / "d", {"a": 10, "lonely": 1}))
    with pytest.raises(DataError, match="class 'lonely' has 1 image"):
        stratified_split(images, 0.15, 0.15, seed=0)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        read_class_folders(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(b"x")
    with pytest.raises(DataError, match="no class subfolders"):
        read_class_folders(tmp_path / "flat")
    make_tree(tmp_path / "empty", {"a": 0, "b": 0})
    with pytest.raises(DataError, match="no image files"):
        read_class_folders(tmp_path / "empty")
