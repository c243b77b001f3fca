"""A folder with one subfolder per class, as Keras' image_dataset_from_directory reads it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edgetl.errors import DataError
from edgetl.runtime.image import find_images, is_image_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    path: Path
    label: int


@dataclass(frozen=True)
class LabelledImages:
    root: Path
    class_names: list[str]
    examples: list[Example]


def class_folders(root: Path) -> list[tuple[str, list[Path]]]:
    """(class name, its image files) for each subfolder of `root`, the images found at any depth below it; hidden
    folders are no classes (a warning says so when they hold images). The one rule for "class folders", which
    training and the bench both follow."""
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError as error:
        raise DataError(f"{root}: cannot be listed ({error.strerror or error})") from None
    class_dirs = [p for p in folders if not p.name.startswith(".")]
    hidden = [p.name for p in folders if p.name.startswith(".") and find_images(p)[0]]
    if hidden:
        log.warning(
            "%s: folder(s) %s hold images but are hidden (names start with '.') and are not classes; rename them "
            "to train on them",
            root,
            ", ".join(map(repr, hidden)),
        )
    classes = []
    for class_dir in class_dirs:
        files, unlisted = find_images(class_dir)
        for folder, reason in unlisted:
            log.warning("%s: %s", folder, reason)
        classes.append((class_dir.name, files))
    return classes


def read_class_folders(root: Path) -> LabelledImages:
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected one subfolder of images per class)")
    classes = class_folders(root)
    if not classes:
        raise DataError(f"{root}: has no class subfolders (expected one subfolder of images per class)")
    class_names: list[str] = []
    examples: list[Example] = []
    for name, files in classes:
        if files:
            examples.extend(Example(path, len(class_names)) for path in files)
            class_names.append(name)
    if not examples:
        raise DataError(f"{root}: no image files in its class subfolders")
    if len(class_names) < 2:
        raise DataError(f"{root}: only one class with images ({class_names[0]}); a classifier needs two or more")
    return LabelledImages(root, class_names, examples)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def read_image_tree(root: Path) -> list[Path]:
    """Every image file below `root` (any depth, hidden folders left out), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder" if not root.exists() else f"{root}: not a folder of images")
    files = sorted(p for p in root.rglob("*") if is_image_file(p) and not _hidden(p.relative_to(root)))
    if not files:
        raise DataError(f"{root}: holds no image files")
    return files
