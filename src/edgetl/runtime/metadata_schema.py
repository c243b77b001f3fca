"""The schema of the edgetl metadata a model file carries (edgetl.json): typed fields with their ranges, checked by
pydantic when a file is opened, and what each field is expected to hold, said in the one-line error.

Imported only when a file's metadata is read (`ModelMetadata.from_json`): pydantic costs start-up time that
`edgetl --help` never pays. The defaults of the optional fields stay in `ModelMetadata` and `Normalization`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, field_validator

from edgetl.runtime.metadata import MAX_INPUT_SIDE

_STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")

Label = Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\r\n]*$")]
Side = Annotated[int, Field(ge=1, le=MAX_INPUT_SIDE)]
Number = Annotated[float, Strict()]
# JSON has no tuples: the list itself is taken as a tuple, what is in it stays strict.
Triple = Annotated[tuple[Number, Number, Number], Strict(False)]


def _resize_modes() -> list[str]:
    from edgetl.runtime.image import RESAMPLING

    return list(RESAMPLING)


# What each field holds, as the error names it: the field's whole value is shown with it.
EXPECTED = {
    "labels": "a list of one or more class names, each a line of text",
    "input_size": f"[height, width], whole numbers from 1 to {MAX_INPUT_SIDE}",
    "normalization": "an object",
    "normalization.mode": "text",
    "normalization.scale": "a finite number",
    "normalization.offset": "a finite number",
    "normalization.mean": "three finite numbers",
    "normalization.std": "three finite non-zero numbers",
    "normalization.inside_model": "true or false",
    "backbone": "text",
    "channel_order": "text",
    "resize": f"one of {', '.join(_resize_modes())}",
    "pixel_range": "[low, high], finite numbers, low < high",
    "model_format": "text",
    "format_version": "a whole number",
    "extra": "an object",
}


class _Given(BaseModel):
    model_config = _STRICT

    def given(self, model) -> dict[str, Any]:
        """The fields the file gives (not None), as keywords of a dataclass (`model`): the rest keep its defaults."""
        return {
            name: getattr(self, name) for name in model.__dataclass_fields__ if getattr(self, name, None) is not None
        }


class NormalizationFields(_Given):
    mode: str
    scale: Number | None = None
    offset: Number | None = None
    mean: Triple | None = None
    std: Triple | None = None
    inside_model: bool | None = None

    @field_validator("std")
    @classmethod
    def _no_zero(cls, std):
        if std is not None and any(value == 0 for value in std):
            raise ValueError("a std of 0 divides by zero")
        return std


class MetadataFields(_Given):
    labels: Annotated[list[Label], Field(min_length=1)]
    input_size: Annotated[tuple[Side, Side], Strict(False)]
    normalization: NormalizationFields
    backbone: str | None = None
    channel_order: str | None = None
    resize: str | None = None
    pixel_range: Annotated[tuple[Number, Number], Strict(False)] | None = None
    model_format: str | None = None
    format_version: Annotated[int, Field(ge=0)] | None = None
    extra: dict[str, Any] | None = None

    @field_validator("resize")
    @classmethod
    def _known_resize(cls, resize):
        if resize is not None and resize not in _resize_modes():
            raise ValueError(f"not one of {', '.join(_resize_modes())}")
        return resize

    @field_validator("pixel_range")
    @classmethod
    def _ordered(cls, pixel_range):
        if pixel_range is not None and not (math.isfinite(pixel_range[0]) and pixel_range[0] < pixel_range[1]):
            raise ValueError("low must be below high")
        return pixel_range
