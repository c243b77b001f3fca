"""`edgetl.Classifier`: an exported model in on-device Python code, the library side of `edgetl classify`.

    from edgetl import Classifier

    classifier = Classifier("model_int8.tflite")
    for result in classifier.classify(["photo.jpg", camera_frame]):   # paths, numpy arrays or Pillow images
        print(result.label, result.top)

Importing it pulls no TensorFlow: numpy, pillow and the model's runtime (LiteRT or onnxruntime).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from edgetl.errors import DataError
from edgetl.runtime.bounds import check_share
from edgetl.runtime.classify import UNKNOWN, Classification
from edgetl.runtime.classify import top_k as top_labels
from edgetl.runtime.engine import open_engine
from edgetl.runtime.foreign import ModelFlags
from edgetl.runtime.image import fit_to_input, load_image, to_rgb
from edgetl.runtime.settings import ClassifySettings

ImageLike = str | Path | np.ndarray | Image.Image


class Classifier:
    """A .tflite or .onnx classifier loaded once; images in, labels out. `labels` (a file) and `normalization`
    describe a model from another tool that carries no metadata, as `edgetl classify`'s flags do."""

    def __init__(
        self,
        model: str | Path,
        runtime: str | None = None,
        threads: int | None = None,
        labels: str | Path | None = None,
        normalization: str | None = None,
    ) -> None:
        flags = ModelFlags(Path(labels) if labels is not None else None, normalization)
        self.engine = open_engine(model, runtime=runtime, threads=threads, flags=flags)

    @property
    def labels(self) -> list[str]:
        return self.engine.labels

    @property
    def input_size(self) -> tuple[int, int]:
        return self.engine.input_size

    def pixels(self, image: ImageLike) -> np.ndarray:
        """One image as the model's input pixels: decoded and converted exactly as `edgetl classify` does."""
        size, resize = self.engine.input_size, self.engine.metadata.resize
        if isinstance(image, str | Path):
            return load_image(image, size, resize)
        if isinstance(image, np.ndarray):
            if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
                raise DataError(f"an array of shape {image.shape} is no image: expected (height, width[, 1|3|4])")
            channels = image if image.ndim == 2 or image.shape[2] != 1 else image[..., 0]
            image = Image.fromarray(np.ascontiguousarray(channels.astype(np.uint8, copy=False)))
        if not isinstance(image, Image.Image):
            raise DataError(f"a {type(image).__name__} is no image: give a path, a numpy array or a Pillow image")
        return fit_to_input(to_rgb(image), size, resize)

    def predict(self, images: Iterable[ImageLike]) -> np.ndarray:
        """Class probabilities, one row per image, in `labels` order; an image that cannot be read raises."""
        pixels = [self.pixels(image) for image in images]
        if not pixels:
            return np.zeros((0, len(self.labels)), np.float32)
        return self.engine.predict(np.stack(pixels))

    def classify(
        self,
        images: Iterable[ImageLike],
        top_k: int = ClassifySettings.top_k,
        threshold: float = ClassifySettings.threshold,
    ) -> list[Classification]:
        """One result per image, in order: its top labels with scores, or the error that kept it from being
        read (the others go on). Arrays and Pillow images are named `<image N>` in the results."""
        check_share(threshold, "threshold")
        k = min(top_k, len(self.labels))
        names, pixels, errors = [], [], {}
        for index, image in enumerate(images):
            names.append(str(image) if isinstance(image, str | Path) else f"<image {index}>")
            try:
                pixels.append(self.pixels(image))
            except DataError as error:
                errors[index] = str(error)
        probabilities = iter(self.engine.predict(np.stack(pixels)) if pixels else [])
        results = []
        for index, name in enumerate(names):
            if index in errors:
                results.append(Classification(name, error=errors[index]))
                continue
            top = top_labels(next(probabilities), self.labels, k)
            results.append(Classification(name, top, top[0][0] if top[0][1] >= threshold else UNKNOWN))
        return results
