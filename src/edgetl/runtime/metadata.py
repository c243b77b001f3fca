"""What travels inside an exported model file: labels and how to turn an image into its input.

TFLite files carry it as associated files in a zip archive appended to the flatbuffer (the TFLite Support
convention: interpreters ignore the trailing bytes, `zipfile` finds the archive). ONNX files carry it in
`metadata_props`, which onnxruntime exposes as the session's custom metadata.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.errors import ModelFileError

if TYPE_CHECKING:  # the CLI reads NORMALIZATIONS from here: numpy is imported when pixels are normalised
    import numpy as np

METADATA_KEY = "edgetl.json"
LABELS_FILE = "labels.txt"
FORMAT_VERSION = 1


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
    def from_json(cls, text: str, source: str = "metadata") -> ModelMetadata:
        try:
            raw = json.loads(text)
            raw["normalization"] = Normalization(
                **{
                    **raw["normalization"],
                    "mean": tuple(raw["normalization"].get("mean", (0.0, 0.0, 0.0))),
                    "std": tuple(raw["normalization"].get("std", (1.0, 1.0, 1.0))),
                }
            )
            raw["input_size"] = tuple(raw["input_size"])
            raw["pixel_range"] = tuple(raw.get("pixel_range", (0.0, 255.0)))
            known = cls.__dataclass_fields__
            return cls(**{key: value for key, value in raw.items() if key in known})
        except (ValueError, KeyError, TypeError) as error:
            raise ModelFileError(f"{source}: edgetl metadata is damaged ({error})") from None


def read_tflite_metadata(path: Path) -> ModelMetadata | None:
    """The metadata appended to a .tflite file, or None when it carries none."""
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_KEY not in archive.namelist():
                return None
            return ModelMetadata.from_json(archive.read(METADATA_KEY).decode("utf-8"), str(path))
    except zipfile.BadZipFile:
        return None
