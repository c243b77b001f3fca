"""Dataset layouts as people have them, recognised without being told: one reader per layout, in a registry.

folder    DATA/<class>/*.jpg                              split here, stratified and seeded
presplit  DATA/train/<class>/, DATA/valid|validation|val/<class>/, DATA/test/<class>/   split kept as given
csv       DATA/labels.csv (id,label) + DATA/train/<id>.jpg (Kaggle style)               split here
npz       FILE.npz with X_train, y_train, X_test, y_test [, class_names]     validation carved from train
tfds      tfds:NAME through tensorflow-datasets (optional, needs the network the first time)
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path

from edgetl.data.dataset import Dataset, check_class_names, require_images, stratified_pick
from edgetl.data.folder import Example, LabelledImages, read_class_folders
from edgetl.data.options import LayoutOptions
from edgetl.data.split import VALIDATION_NAMES, Split, stratified_split
from edgetl.errors import DataError, csv_problem
from edgetl.runtime.image import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

ID_COLUMNS = ("id", "image_id", "image", "filename", "file", "path", "name")
LABEL_COLUMNS = ("label", "labels", "class", "breed", "category", "target", "species")
TFDS_PREFIX = "tfds:"
ARRAY_LAYOUTS = frozenset({"npz", "tfds"})  # images in memory, not files: the run gets PNG copies


def read_folder(source: str, options: LayoutOptions) -> Dataset:
    images = read_class_folders(Path(source))
    split = stratified_split(images, options.validation_fraction, options.test_fraction, options.seed)
    return Dataset("folder", source, split.class_names, split=split)


def presplit_folders(root: Path) -> dict[str, Path] | None:
    """The subset folders of a presplit dataset, or None when `root` is not one (train/ and test/ with classes)."""
    train, test = root / "train", root / "test"
    if not (train.is_dir() and test.is_dir() and any(p.is_dir() for p in train.iterdir())):
        return None
    if not any(p.is_dir() for p in test.iterdir()):
        return None  # Kaggle's unlabelled test/ of loose images is not a labelled subset
    validation = next((root / name for name in VALIDATION_NAMES if (root / name).is_dir()), None)
    return {"train": train, "validation": validation, "test": test}


def read_presplit(source: str, options: LayoutOptions) -> Dataset:
    root = Path(source)
    folders = presplit_folders(root) if root.is_dir() else None
    if folders is None:
        raise DataError(
            f"{root}: not a presplit dataset "
            f"(expected train/, test/ and optionally valid/, each with one subfolder per class)"
        )
    train_images = read_class_folders(folders["train"])
    class_names = train_images.class_names
    index = {name: label for label, name in enumerate(class_names)}

    def relabelled(folder: Path) -> list[Example]:
        images = read_class_folders(folder)
        unknown = [name for name in images.class_names if name not in index]
        if unknown:
            raise DataError(
                f"{folder}: class(es) {', '.join(unknown)} are not in {folders['train']}; "
                f"every class needs training images"
            )
        return [Example(e.path, index[images.class_names[e.label]]) for e in images.examples]

    train = list(train_images.examples)
    test = relabelled(folders["test"])
    if folders["validation"] is not None:
        validation = relabelled(folders["validation"])
    else:
        log.info("%s: no valid/ folder; carving validation from train/", root)
        kept, picked = stratified_pick([e.label for e in train], options.validation_fraction, options.seed)
        train, validation = [train[i] for i in kept], [train[i] for i in picked]
    dataset = Dataset("presplit", source, class_names, split=Split(root, class_names, train, validation, test))
    require_images(dataset)
    return dataset


def find_csv(root: Path) -> Path | None:
    if (root / "labels.csv").is_file():
        return root / "labels.csv"
    candidates = sorted(root.glob("*.csv"))
    return candidates[0] if len(candidates) == 1 else None


def pick_column(columns: list[str], wanted: str | None, guesses: tuple[str, ...], fallback: int, what: str, csv_path):
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{csv_path}: no column '{wanted}' (columns: {', '.join(columns)}); fix --{what}-column")
        return wanted
    lowered = {column.lower(): column for column in columns}
    for guess in guesses:
        if guess in lowered:
            return lowered[guess]
    if len(columns) <= fallback:
        raise DataError(f"{csv_path}: needs an id and a label column (columns: {', '.join(columns)})")
    return columns[fallback]


def image_path(images_dir: Path, image_id: str) -> Path:
    """`train/<id>` when the id has an image extension, else the first `train/<id>.<ext>` that exists."""
    if Path(image_id).suffix.lower() in IMAGE_SUFFIXES:
        return images_dir / image_id
    for suffix in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", *sorted(IMAGE_SUFFIXES)):
        candidate = images_dir / f"{image_id}{suffix}"
        if candidate.is_file():
            return candidate
    return images_dir / f"{image_id}.jpg"  # missing: decoding skips it with a warning naming the file


def inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def read_csv_labels(source: str, options: LayoutOptions) -> Dataset:
    given = Path(source)
    if given.is_file():
        csv_path, root = given, given.parent
    elif given.is_dir():
        root = given
        csv_path = find_csv(root)
        if csv_path is None:
            raise DataError(f"{root}: no labels.csv (pass the CSV file itself as DATA)")
    else:
        raise DataError(f"{given}: no such file or folder")
    if options.images is not None:
        images_dir = root / options.images
    else:
        images_dir = root / "train" if (root / "train").is_dir() else root
    if not inside(images_dir, root):
        raise DataError(f"--images {options.images}: points outside the data folder {root}; give a folder inside it")
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: no such image folder for {csv_path.name}; pass --images FOLDER")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c for c in (reader.fieldnames or []) if c is not None]
            id_column = pick_column(columns, options.id_column, ID_COLUMNS, 0, "id", csv_path)
            label_column = pick_column(columns, options.label_column, LABEL_COLUMNS, 1, "label", csv_path)
            rows = [(row.get(id_column) or "", row.get(label_column) or "") for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{csv_path}: cannot be read as a UTF-8 CSV file ({csv_problem(error)})") from None
    rows = [(image_id.strip(), label.strip()) for image_id, label in rows if image_id.strip() and label.strip()]
    if not rows:
        raise DataError(f"{csv_path}: no rows with both '{id_column}' and '{label_column}'")
    class_names = sorted({label for _, label in rows})
    index = {name: label for label, name in enumerate(class_names)}
    examples: list[Example] = []
    first_label: dict[Path, str] = {}
    repeated: list[str] = []
    for image_id, label in rows:
        path = image_path(images_dir, image_id)
        if not inside(path, root):
            raise DataError(f"{csv_path}: id '{image_id}' points outside the data folder {root}; refused")
        # One image, one example: a repeated id would land in two subsets (train and test) or carry two labels.
        key = path.resolve()
        if key in first_label:
            repeated.append(
                f"'{image_id}'" + (f" ({label}, kept {first_label[key]})" if label != first_label[key] else "")
            )
            continue
        first_label[key] = label
        examples.append(Example(path, index[label]))
    if repeated:
        log.warning(
            "%s: %d repeated id(s) ignored, the first row of each kept: %s%s",
            csv_path,
            len(repeated),
            ", ".join(repeated[:5]),
            ", ..." if len(repeated) > 5 else "",
        )
    class_names = sorted({name for name in index if any(e.label == index[name] for e in examples)})
    if len(class_names) != len(index):  # a label only a repeated row carried
        index = {name: label for label, name in enumerate(class_names)}
        examples = [Example(e.path, index[first_label[e.path.resolve()]]) for e in examples]
    if len(class_names) < 2:
        raise DataError(f"{csv_path}: only one label ({class_names[0]}); a classifier needs two or more")
    images = LabelledImages(root, class_names, examples)
    split = stratified_split(images, options.validation_fraction, options.test_fraction, options.seed)
    log.info("%s: ids from column '%s', labels from column '%s'", csv_path, id_column, label_column)
    return Dataset("csv", source, class_names, split=split)


def read_npz_layout(source: str, options: LayoutOptions) -> Dataset:
    from edgetl.data.arrays import read_npz

    return read_npz(Path(source), options)


def read_tfds_layout(source: str, options: LayoutOptions) -> Dataset:
    from edgetl.data.arrays import read_tfds

    return read_tfds(source.removeprefix(TFDS_PREFIX), options)


LAYOUTS: dict[str, Callable[[str, LayoutOptions], Dataset]] = {
    "folder": read_folder,
    "presplit": read_presplit,
    "csv": read_csv_labels,
    "npz": read_npz_layout,
    "tfds": read_tfds_layout,
}


def detect_layout(source: str) -> str:
    if source.startswith(TFDS_PREFIX):
        return "tfds"
    path = Path(source)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".npz", ".csv"):
            return suffix[1:]
        raise DataError(f"{path}: a file, but not .npz or .csv (give a folder of images, an .npz, a CSV or tfds:NAME)")
    if path.is_dir():
        if presplit_folders(path) is not None:
            return "presplit"
        # labels.csv, or a single other CSV beside a train/ folder: a stray CSV in class folders is not labels.
        csv_path = find_csv(path)
        if csv_path is not None and (csv_path.name == "labels.csv" or (path / "train").is_dir()):
            return "csv"
    return "folder"


def read_dataset(source: str, layout: str, options: LayoutOptions) -> Dataset:
    """The dataset at `source` in `layout` ('auto' detects it)."""
    chosen = detect_layout(source) if layout == "auto" else layout
    if chosen not in LAYOUTS:
        raise DataError(f"--layout {layout}: unknown; choose auto or one of {', '.join(LAYOUTS)}")
    log.info("%s: %s layout", source, chosen)
    dataset = LAYOUTS[chosen](source, options)
    check_class_names(dataset.class_names, source)
    return dataset
