"""What travels inside an exported model file: labels and how to turn an image into its input.

TFLite files carry it as associated files in a zip archive appended to the flatbuffer (the TFLite Support
convention: interpreters ignore the trailing bytes, `zipfile` finds the archive). ONNX files carry it in
`metadata_props`, which onnxruntime exposes as the session's custom metadata.
"""

from __future__ import annotations

import json
import lzma
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.errors import ModelFileError

if TYPE_CHECKING:  # the CLI reads NORMALIZATIONS from here: numpy is imported when pixels are normalised
    import numpy as np

METADATA_KEY = "edgetl.json"
LABELS_FILE = "labels.txt"
FORMAT_VERSION = 1
TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, at bytes 4-8 of every .tflite file

# On a board the model file is the only input, so what it carries is read as untrusted: at most this many bytes of
# metadata are decompressed or parsed (the labels of 20,000 classes take under 1 MB), and an input side above
# MAX_INPUT_SIDE is refused before any buffer of that size is allocated.
MAX_METADATA_BYTES = 4 * 1024 * 1024
MAX_INPUT_SIDE = 4096
# What Python's zipfile and its decompressors raise on a damaged or hostile archive.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError, RuntimeError, ValueError)


@dataclass(frozen=True)
class Normalization:
    """How raw 0-255 pixels become backbone input: x * scale + offset, then (x - mean) / std per channel.

    The exported models apply it themselves (`inside_model`); it is recorded so a reader knows what happened.
    """

    mode: str
    scale: float = 1.0
    offset: float = 0.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    inside_model: bool = True

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Raw RGB pixels -> what a model expects that does not normalise inside (a model from another tool)."""
        import numpy as np

        values = pixels.astype(np.float32)
        if self.mode == "caffe":
            values = values[..., ::-1]  # caffe models take BGR; the mean is in that order too
        values = values * np.float32(self.scale) + np.float32(self.offset)
        return (values - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)


# keras.applications' three preprocessing modes, expressed on raw 0-255 RGB pixels.
TF_MODE = Normalization(mode="tf", scale=1 / 127.5, offset=-1.0)
TORCH_MODE = Normalization(mode="torch", scale=1 / 255.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
# caffe: RGB -> BGR, then the ImageNet mean (in BGR order) subtracted.
CAFFE_MODE = Normalization(mode="caffe", mean=(103.939, 116.779, 123.68))
# EfficientNet and ConvNeXt rescale inside keras' own model: they take raw pixels.
RAW_MODE = Normalization(mode="raw")
# What a model may expect as input, by the name `--normalization` takes.
NORMALIZATIONS: dict[str, Normalization] = {n.mode: n for n in (RAW_MODE, TF_MODE, TORCH_MODE, CAFFE_MODE)}


@dataclass(frozen=True)
class ModelMetadata:
    labels: list[str]
    input_size: tuple[int, int]  # (height, width)
    normalization: Normalization
    backbone: str = ""
    channel_order: str = "RGB"
    resize: str = "bilinear"
    pixel_range: tuple[float, float] = (0.0, 255.0)
    model_format: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "metadata") -> ModelMetadata:
        """Parse and validate: every field is checked for type and range, and a failure names the field."""
        if len(text) > MAX_METADATA_BYTES:
            raise ModelFileError(f"{source}: edgetl metadata is {len(text)} bytes, over the {MAX_METADATA_BYTES} limit")
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ModelFileError(f"{source}: edgetl metadata is damaged (not UTF-8 text: {error.reason})") from None
        try:
            raw = json.loads(text)
        except ValueError as error:
            raise ModelFileError(f"{source}: edgetl metadata is damaged (not JSON: {error})") from None
        except RecursionError:
            raise ModelFileError(f"{source}: edgetl metadata is damaged (JSON nested too deeply)") from None
        from edgetl.runtime.metadata_schema import EXPECTED, MetadataFields
        from edgetl.schemas import validated

        checked = validated(MetadataFields, raw, source, "edgetl metadata", EXPECTED)
        given = checked.given(cls)
        given["normalization"] = Normalization(**checked.normalization.given(Normalization))
        return cls(**given)

    def check_model(self, source: str, input_shape: Sequence, output_shape: Sequence) -> None:
        """Refuse metadata that does not describe the model it travels in: one label per output, and the input
        size of an NHWC input. Dimensions a model leaves open (None, -1, a name) are not compared."""
        classes = output_shape[-1] if len(output_shape) else None
        if _is_whole(classes) and classes > 0 and classes != len(self.labels):
            raise ModelFileError(
                f"{source}: edgetl metadata has {len(self.labels)} labels but the model has {classes} outputs; "
                f"the labels do not belong to this model (re-export it with edgetl)"
            )
        if len(input_shape) == 4 and input_shape[3] == 3:
            height, width = input_shape[1], input_shape[2]
            # Each side the model fixes is compared on its own: one fixed and one open side must still agree.
            fixed = [
                (side, size)
                for side, size in zip((height, width), self.input_size, strict=True)
                if _is_whole(side) and side > 0
            ]
            if any(side != size for side, size in fixed):
                raise ModelFileError(
                    f"{source}: edgetl metadata says input_size {list(self.input_size)} but the model takes "
                    f"{height}x{width} images (re-export it with edgetl)"
                )


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_tflite_metadata(path: Path) -> ModelMetadata | None:
    """The metadata appended to a .tflite file, or None when it carries none.

    A file that is no TFLite model (empty, cut short, another format), whose metadata is damaged or would
    decompress to more than MAX_METADATA_BYTES raises a ModelFileError saying so.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if not head:
                raise ModelFileError(f"{path}: is empty (0 bytes); copy or export the model file again")
            if head[4:8] != TFLITE_IDENTIFIER:
                raise ModelFileError(
                    f"{path}: not a TFLite model (no {TFLITE_IDENTIFIER.decode()} identifier at byte 4); "
                    f"the file is damaged or in another format"
                )
            try:
                archive = zipfile.ZipFile(handle)
            except ZIP_ERRORS:
                if _holds(handle, METADATA_KEY.encode()):
                    raise ModelFileError(
                        f"{path}: its edgetl metadata is damaged (the end of the file is missing or corrupted); "
                        f"copy or export the model file again"
                    ) from None
                return None
            with archive:
                return _read_member(archive, path)
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read ({error.strerror or error})") from None


def _read_member(archive: zipfile.ZipFile, path: Path) -> ModelMetadata | None:
    try:
        info = archive.getinfo(METADATA_KEY)
    except KeyError:
        return None
    too_big = f"{path}: edgetl metadata would decompress to more than {MAX_METADATA_BYTES} bytes; refused"
    if info.file_size > MAX_METADATA_BYTES:
        raise ModelFileError(too_big)
    try:
        with archive.open(info) as member:
            data = member.read(MAX_METADATA_BYTES + 1)  # the size in the header may lie: never read past the cap
    except ZIP_ERRORS as error:
        raise ModelFileError(f"{path}: edgetl metadata is damaged ({error})") from None
    if len(data) > MAX_METADATA_BYTES:
        raise ModelFileError(too_big)
    return ModelMetadata.from_json(data, str(path))


def _holds(handle, needle: bytes, chunk: int = 1 << 20) -> bool:
    """Whether the open file contains `needle` anywhere (read in chunks that overlap by its length)."""
    handle.seek(0)
    tail = b""
    while block := handle.read(chunk):
        if needle in tail + block:
            return True
        tail = block[-len(needle) :]
    return False
