"""The SavedModel TensorFlow's TFLite converter makes of a Keras model, made once per export.

At every conversion of a Keras model the converter first exports it to a SavedModel in a folder of its own: a trace
of the model and TensorFlow's SavedModel writer, 3-4 s of a MobileNetV2's 6-7 s conversion at 224 px. An int8
export converts one model more than once: the float32 file, then the int8 file's calibrate-only graph of the
bias-corrected model (and the float16 and dynamic-range files where asked). The model's graph is the same each
time; only the values of some variables differ (bias correction moves biases, and gives them back after).

While `converter_exports_kept()` is active, the first conversion of a model keeps a copy of the SavedModel the
converter made; a later conversion of the same model gets that copy with the variables as the model holds them
now written into its checkpoint, which is the SavedModel the converter would make again, and the converter converts
it as its own (to the same bytes: a test holds it). A checkpoint entry is the model's variable of the same path
(Keras' `layer/variable`); where one is not found so, the model is exported anew every time.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# The checkpoint entry of TensorFlow's object graph, and the attribute that holds a variable's value.
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VARIABLE_VALUE = "VARIABLE_VALUE"

_kept: _KeptExports | None = None  # the active converter_exports_kept()'s


@contextlib.contextmanager
def converter_exports_kept() -> Iterator[None]:
    """Inside, each model's SavedModel is made once for all its TFLite conversions (`exported_once`); the copies
    go on leaving."""
    global _kept
    if _kept is not None:  # nested: the outer one keeps them
        yield
        return
    with tempfile.TemporaryDirectory(prefix="edgetl-converter-exports-") as folder:
        _kept = _KeptExports(Path(folder))
        try:
            yield
        finally:
            _kept = None


@contextlib.contextmanager
def exported_once() -> Iterator[None]:
    """Around one conversion: the converter's export (`keras.export.ExportArchive`, which it makes of a Keras 3
    model) takes the model's kept SavedModel where there is one, and keeps the one it makes where there is none.
    Outside `converter_exports_kept()`, or where Keras has no ExportArchive, the converter exports as it does."""
    import keras

    archive = getattr(getattr(keras, "export", None), "ExportArchive", None)
    if _kept is None or archive is None:
        yield
        return
    kept = _kept

    def reusing(*args, **kwargs):  # the converter asks for the default archive; anything else is made as asked
        return archive(*args, **kwargs) if args or kwargs else _ReusingArchive(archive, kept)

    keras.export.ExportArchive = reusing
    try:
        yield
    finally:
        keras.export.ExportArchive = archive


class _ReusingArchive:
    """What the converter gets for keras.export.ExportArchive: its calls are recorded, and `write_out` copies the
    kept SavedModel of the tracked model with its variables as they are now, or makes one with a real archive from
    the recorded calls and keeps it. Anything else the converter asks of it goes to a real archive."""

    def __init__(self, archive_class, kept: _KeptExports) -> None:
        self._archive_class, self._kept = archive_class, kept
        self._calls: list[tuple[str, tuple, dict]] = []
        self._real = None

    def track(self, resource) -> None:
        self._calls.append(("track", (resource,), {}))

    def add_endpoint(self, name, fn, input_signature=None, **kwargs) -> None:
        self._calls.append(("add_endpoint", (name, fn, input_signature), kwargs))

    def _made(self):
        if self._real is None:
            self._real = self._archive_class()
            for method, args, kwargs in self._calls:
                getattr(self._real, method)(*args, **kwargs)
        return self._real

    def __getattr__(self, name: str):
        return getattr(self._made(), name)

    def write_out(self, filepath, *args, **kwargs) -> None:
        key = self._key()
        if key is not None and self._kept.write(key, Path(filepath)):
            return
        self._made().write_out(filepath, *args, **kwargs)
        if key is not None:
            self._kept.keep(key, Path(filepath))

    def _key(self) -> tuple | None:
        """The tracked model and its one endpoint's name and input signature: what the SavedModel is made of
        besides the variables' values. None for anything else (not reused)."""
        if [method for method, _, _ in self._calls] != ["track", "add_endpoint"]:
            return None
        model = self._calls[0][1][0]
        name, _, signature = self._calls[1][1]
        return model, name, repr(signature)


class _KeptExports:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.kept: list[tuple[weakref.ref, tuple, Path, dict]] = []  # model, rest of the key, folder, variables

    def _find(self, key: tuple):
        model, *rest = key
        return next((entry for entry in self.kept if entry[0]() is model and entry[1] == tuple(rest)), None)

    # Neither raises: the converter takes any error of its export for a model it cannot save, and converts it
    # another way (its frozen-graph pipeline, other bytes). A copy that cannot be kept or written is exported anew.

    def keep(self, key: tuple, saved_model: Path) -> None:
        model, *rest = key
        copy = self.folder / str(len(self.kept))
        try:
            variables = _checkpoint_variables(saved_model, model)
            if variables is None or self._find(key) is not None:
                return
            shutil.copytree(saved_model, copy)
        except Exception:  # noqa: BLE001 - not kept; every conversion exports as the converter does
            log.debug(
                "the converter's SavedModel of %s is not kept", getattr(model, "name", "the model"), exc_info=True
            )
            shutil.rmtree(copy, ignore_errors=True)
            return
        self.kept.append((weakref.ref(model), tuple(rest), copy, variables))

    def write(self, key: tuple, saved_model: Path) -> bool:
        """Write the model's kept SavedModel, with its variables' values now, to `saved_model` (an empty folder);
        False where none is kept or it cannot be written (the folder emptied again)."""
        entry = self._find(key)
        if entry is None:
            return False
        try:
            shutil.copytree(entry[2], saved_model, dirs_exist_ok=True)
            _write_variables(_variables_prefix(saved_model), entry[3])
        except Exception:  # noqa: BLE001 - exported anew instead
            log.debug("the kept SavedModel could not be written to %s", saved_model, exc_info=True)
            for path in saved_model.iterdir():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            return False
        return True


def _variables_prefix(saved_model: Path) -> Path:
    return saved_model / "variables" / "variables"


def _checkpoint_variables(saved_model: Path, model) -> dict | None:
    """The SavedModel's checkpoint entries of variable values -> the model's variable each holds (by its path,
    which the entry records as the variable's full name); None where one is not found so, or a path repeats."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    by_path: dict = {}
    for variable in model.variables:
        path = getattr(variable, "path", None)
        if path is None or path in by_path:
            return None
        by_path[path] = variable
    try:
        reader = tf.train.load_checkpoint(str(_variables_prefix(saved_model)))
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
    except (tf.errors.OpError, ValueError):
        return None
    shapes = reader.get_variable_to_shape_map()
    variables = {}
    for node in graph.nodes:
        for attribute in node.attributes:
            if attribute.name != VARIABLE_VALUE:
                continue
            variable = by_path.get(attribute.full_name)
            key = attribute.checkpoint_key
            if variable is None or tuple(shapes.get(key, ())) != tuple(variable.shape):
                return None
            variables[key] = variable
    return variables or None


def _write_variables(prefix: Path, variables: dict) -> None:
    """Rewrite the checkpoint at `prefix` with each of `variables`' entries holding its variable's value now, the
    other entries (the object graph) as they are."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    dtypes = reader.get_variable_to_dtype_map()
    names = sorted(dtypes)
    tensors = [
        tf.constant(np.asarray(variables[name]), dtypes[name]) if name in variables else reader.get_tensor(name)
        for name in names
    ]
    del reader
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
