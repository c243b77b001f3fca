"""The backbone registry: one entry per keras.applications family, with the preprocessing it was trained with.

Adding a backbone is adding one `BackboneSpec` to `BACKBONES`. Nothing here imports TensorFlow, so the CLI can
list the choices without paying for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetl.errors import EdgetlError
from edgetl.runtime.metadata import CAFFE_MODE, RAW_MODE, TF_MODE, Normalization


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    constructor: str  # attribute of keras.applications
    normalization: Normalization
    default_size: int
    min_size: int
    alphas: tuple[float, ...] = ()  # width multipliers keras offers; empty when the family has none

    def check(self, image_size: int, alpha: float | None) -> None:
        if image_size < self.min_size:
            raise EdgetlError(
                f"--image-size {image_size} is too small for {self.name}: it needs at least {self.min_size}"
            )
        if alpha is not None and alpha != 1.0 and alpha not in self.alphas:
            if not self.alphas:
                raise EdgetlError(f"--alpha {alpha}: {self.name} has no width multiplier (omit --alpha)")
            choices = ", ".join(str(a) for a in self.alphas)
            raise EdgetlError(f"--alpha {alpha} is not offered for {self.name}: choose one of {choices}")


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("mobilenetv2", "MobileNetV2", TF_MODE, 224, 32, alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4)),
        BackboneSpec("xception", "Xception", TF_MODE, 299, 71),
        BackboneSpec("efficientnetb0", "EfficientNetB0", RAW_MODE, 224, 32),
        BackboneSpec("resnet50v2", "ResNet50V2", TF_MODE, 224, 32),
        BackboneSpec("vgg16", "VGG16", CAFFE_MODE, 224, 32),
    )
}


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name.lower()]
    except KeyError:
        raise EdgetlError(f"unknown backbone '{name}': choose one of {', '.join(BACKBONES)}") from None
