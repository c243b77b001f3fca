"""A stratified, seeded train/validation/test split, saved with the run so later commands see the same test set."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from edgetl.data.folder import Example, LabelledImages
from edgetl.errors import DataError

SUBSETS = ("train", "validation", "test")
# What datasets call their validation subset (a folder of a presplit dataset, a split of a tfds one), the first
# found taken.
VALIDATION_NAMES = ("validation", "valid", "val")
MIN_IMAGES_PER_CLASS = 3  # one each for train, validation and test


@dataclass(frozen=True)
class Split:
    root: Path
    class_names: list[str]
    train: list[Example]
    validation: list[Example]
    test: list[Example]

    def subset(self, name: str) -> list[Example]:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    def to_json(self) -> str:
        def rows(examples: list[Example]) -> list[list]:
            return [[example.path.relative_to(self.root).as_posix(), example.label] for example in examples]

        document = {"root": str(self.root), "class_names": self.class_names}
        document.update({name: rows(self.subset(name)) for name in SUBSETS})
        return json.dumps(document, indent=1)

    @classmethod
    def read(cls, path: Path) -> Split:
        """A run's split.json, checked (edgetl.schemas): every label names one of the class names."""
        from edgetl.schemas import read_split_file

        return cls._from_checked(read_split_file(path))

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> Split:
        from edgetl.schemas import SplitFile, parse_json, validated

        return cls._from_checked(validated(SplitFile, parse_json(text, source, "the split"), source, "the split"))

    @classmethod
    def _from_checked(cls, document) -> Split:
        root = Path(document.root)
        subsets = {
            name: [Example(root / relative, label) for relative, label in getattr(document, name)] for name in SUBSETS
        }
        return cls(root, list(document.class_names), **subsets)


def stratified_order(labels, limit: int, seed: int) -> list[int]:
    """Up to `limit` indices into `labels`, taken round-robin from each class's own seeded shuffle (classes in label
    order), so any prefix is stratified and classes with few images give all they have."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    queues = []
    for label in sorted(by_class):
        rng.shuffle(by_class[label])
        queues.append(by_class[label])
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(queue) for queue in queues):
        chosen.extend(queue[depth] for queue in queues if depth < len(queue))
        depth += 1
    return chosen[:limit]


def stratified_split(images: LabelledImages, validation_fraction: float, test_fraction: float, seed: int) -> Split:
    """Split each class on its own so every subset holds every class in the same proportion."""
    rng = random.Random(seed)
    by_class: dict[int, list[Example]] = {label: [] for label in range(len(images.class_names))}
    for example in images.examples:
        by_class[example.label].append(example)
    train: list[Example] = []
    validation: list[Example] = []
    test: list[Example] = []
    for label, examples in by_class.items():
        if len(examples) < MIN_IMAGES_PER_CLASS:
            name = images.class_names[label]
            raise DataError(
                f"{images.root / name}: class '{name}' has {len(examples)} image(s); "
                f"each class needs at least {MIN_IMAGES_PER_CLASS} (train, validation, test)"
            )
        shuffled = examples[:]
        rng.shuffle(shuffled)
        n_test = max(1, round(len(shuffled) * test_fraction))
        n_validation = max(1, round(len(shuffled) * validation_fraction))
        n_test = min(n_test, len(shuffled) - 2)
        n_validation = min(n_validation, len(shuffled) - n_test - 1)
        test.extend(shuffled[:n_test])
        validation.extend(shuffled[n_test : n_test + n_validation])
        train.extend(shuffled[n_test + n_validation :])
    # Interleave classes so that a prefix (a calibration sample, a quick check) is still stratified.
    for subset in (train, validation, test):
        rng.shuffle(subset)
    return Split(images.root, images.class_names, train, validation, test)
