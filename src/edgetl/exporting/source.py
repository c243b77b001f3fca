"""What an export starts from: an edgetl run directory, or a Keras file edgetl did not train.

Either way the exporter gets the same `ExportSource`: the model (taking raw 0-255 RGB pixels), its metadata,
the images that verify the exports and the pool that calibration samples are drawn from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.data.folder import Example, read_class_folders, read_image_tree
from edgetl.data.pipeline import DecodedSubset, decode_subset
from edgetl.errors import DataError, EdgetlError, ModelFileError
from edgetl.exporting.formats import KerasFileOptions
from edgetl.exporting.verify import UNLABELLED
from edgetl.run import RunDir, load_keras_model, read_exports_index
from edgetl.runtime.foreign import read_labels
from edgetl.runtime.metadata import NORMALIZATIONS, ModelMetadata, Normalization
from edgetl.tfquiet import import_tensorflow_quietly

log = logging.getLogger(__name__)


@dataclass
class ExportSource:
    root: Path  # where exports/, exports.json and logs/ go
    model: object  # a Keras model: raw 0-255 RGB float pixels in, probabilities out
    metadata: ModelMetadata
    verification: DecodedSubset  # images every export is compared with Keras on
    calibration_pool: list[Example]  # images int8 calibration samples are drawn from
    class_names: list[str]
    seed: int = 0

    @property
    def exports_dir(self) -> Path:
        # An outside model's output folder is laid out like a run's exports part.
        return RunDir(self.root).exports_dir

    @property
    def exports_index(self) -> Path:
        return RunDir(self.root).exports_index

    @property
    def log_path(self) -> Path:
        return RunDir(self.root).export_log

    def read_exports(self) -> list[dict]:
        return read_exports_index(self.exports_index)


def _decoded_or_fail(examples: list[Example], image_size: int, resize: str, what: str, where: Path) -> DecodedSubset:
    # Kept in a file, not in memory: every pass over them (Keras', each file's verification) reads a batch at a time.
    subset = decode_subset(examples, image_size, resize, f"{what} images", spill=True)
    if len(subset.labels) == 0:
        raise DataError(f"{where}: no {what} image could be decoded; cannot verify the exports")
    return subset


def from_run(run_path: Path, trust_model: bool = False) -> ExportSource:
    run = RunDir(Path(run_path))
    run.require_trained()
    metadata = run.read_metadata()
    split = run.read_split()
    import_tensorflow_quietly()
    model = run.load_model(safe_mode=not trust_model)
    test = _decoded_or_fail(split.test, metadata.input_size[0], metadata.resize, "test", split.root)
    seed = run.read_config().seed if run.config.is_file() else 0
    return ExportSource(run.path, model, metadata, test, split.train, split.class_names, seed)


def _image_size(model, requested: int | None, path: Path) -> int:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ModelFileError(f"{path}: takes input of shape {shape}; edgetl exports models of (batch, h, w, 3)")
    height, width = shape[1:3]
    if height is not None and width is not None:
        if height != width:
            raise ModelFileError(f"{path}: takes {height}x{width} images; edgetl handles square inputs")
        if requested is not None and requested != height:
            raise ModelFileError(f"--image-size {requested}: {path} takes {height}x{width} images (omit it)")
        return int(height)
    if requested is None:
        raise ModelFileError(f"{path}: input size is not fixed in the model; give it with --image-size")
    return requested


def _raw_pixel_model(model, normalization: Normalization, image_size: int):
    """Put the preprocessing the model expects in front of it, and a softmax behind it when it outputs
    logits, so the exported files take raw pixels and give probabilities like edgetl's own."""
    import keras

    from edgetl.models.classifier import INPUT_NAME, preprocessing_layers

    pixels = keras.Input((image_size, image_size, 3), dtype="float32", name=INPUT_NAME)
    x = pixels
    for layer, layer_weights in preprocessing_layers(normalization):
        x = layer(x)
        if layer_weights is not None:
            layer.set_weights(layer_weights)
    return keras.Model(pixels, model(x), name=f"edgetl_{model.name}")


def _outputs_probabilities(model, pixels: np.ndarray) -> bool:
    from edgetl.exporting.keras_passes import keras_probabilities

    # A few images at a time, as every Keras pass of an export: TensorFlow's memory pool keeps what the largest
    # call needed to the end of the export (figures: docs/benchmarks.md, export cost's fifth round).
    outputs = keras_probabilities(model, pixels[:8])
    return bool(np.all(outputs >= -1e-6) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))


def read_calibration_folder(root: Path, labels: list[str], labels_path: Path) -> list[Example]:
    """The images of `--calibration`: a folder per class named as the labels (then they are labelled and
    verification measures accuracy too), or any folder of images with no class folders (then they are not)."""
    class_dirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] if root.is_dir() else []
    if not any(folder.name in labels for folder in class_dirs):
        log.info("%s: no folder is named after a class; its images calibrate and verify without labels", root)
        return [Example(path, UNLABELLED) for path in read_image_tree(root)]
    images = read_class_folders(root)
    unknown = [name for name in images.class_names if name not in labels]
    if unknown:
        raise DataError(
            f"{root}: folder '{unknown[0]}' is not a class in {labels_path}; name the folders as the labels"
        )
    # Folder order is alphabetical, the model's output order is the labels file's: relabel by name.
    return [Example(e.path, labels.index(images.class_names[e.label])) for e in images.examples]


def from_keras_file(model_path: Path, keras_file: KerasFileOptions, trust_model: bool = False) -> ExportSource:
    """An outside model: `keras_file.labels` names its outputs in order, `keras_file.calibration` (one folder per
    class, named as in the labels, or a plain folder of images) calibrates int8 and verifies every export."""
    labels_path, calibration_dir, normalization = keras_file.labels, keras_file.calibration, keras_file.normalization
    import_tensorflow_quietly()  # before Keras: importing Keras starts TensorFlow, and its chatter with it
    import keras

    model_path = Path(model_path)
    if normalization not in NORMALIZATIONS:
        raise DataError(f"--normalization {normalization}: unknown; choose one of {', '.join(NORMALIZATIONS)}")
    labels = read_labels(labels_path)
    examples = read_calibration_folder(Path(calibration_dir), labels, labels_path)
    loaded = load_keras_model(model_path, trust_model)
    outputs = tuple(loaded.output_shape)
    if len(outputs) != 2 or outputs[1] != len(labels):
        raise ModelFileError(
            f"{model_path}: outputs shape {outputs}, but {labels_path} names {len(labels)} classes; "
            f"edgetl exports classifiers with one output per label"
        )
    size = _image_size(loaded, keras_file.image_size, model_path)
    spec = NORMALIZATIONS[normalization]
    model = _raw_pixel_model(loaded, spec, size)
    verification = _decoded_or_fail(examples, size, "bilinear", "calibration", Path(calibration_dir))
    extra = {"source_model": model_path.name}
    if not _outputs_probabilities(model, verification.pixels):
        log.info("%s outputs logits; a softmax is added so every export gives probabilities", model_path)
        model = keras.Model(model.input, keras.layers.Softmax(name="probabilities")(model.output))
        extra["softmax_added"] = True
    metadata = ModelMetadata(
        labels=labels,
        input_size=(size, size),
        normalization=replace(spec, inside_model=True),
        backbone=loaded.name,
        extra=extra,
    )
    out = keras_file.out
    root = Path(out) if out is not None else model_path.with_name(f"{model_path.stem}-export")
    return ExportSource(root, model, metadata, verification, examples, labels)


def resolve_source(path: Path, keras_file: KerasFileOptions, trust_model: bool = False) -> ExportSource:
    """A run directory, or a Keras file from outside edgetl with what it needs (`--labels`, `--calibration`)."""
    if path.suffix.lower() in (".keras", ".h5") and not path.is_dir():
        missing = [f"--{name}" for name in ("labels", "calibration") if getattr(keras_file, name) is None]
        if missing:
            raise EdgetlError(
                f"{path}: a Keras file from outside edgetl needs {' and '.join(missing)} "
                f"(class names, one per line; a folder of images per class)"
            )
        return from_keras_file(path, keras_file, trust_model)
    if keras_file.given:
        raise EdgetlError(
            f"{keras_file.given[0]} applies to a Keras model file, not to the run directory {path}; omit it"
        )
    return from_run(path, trust_model=trust_model)
