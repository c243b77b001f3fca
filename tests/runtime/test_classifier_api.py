"""`edgetl.Classifier`, the on-device Python API: the answers `edgetl classify` gives, for paths, numpy arrays
and Pillow images alike, and per-image errors that let the others go on."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import invoke

pytestmark = pytest.mark.slow


def test_classifier_answers_as_the_cli_does_for_paths_arrays_and_pillow_images(exported_run, sample_dir, tmp_path):
    from edgetl import Classifier

    model = exported_run / "exports" / "model_int8.tflite"
    paths = sorted((sample_dir / "three").iterdir())[:4]
    result = invoke("classify", model, *paths, "--json", "--top-k", 2)
    cli = [json.loads(line) for line in result.output.splitlines()]
    classifier = Classifier(model)
    assert classifier.labels == (exported_run / "labels.txt").read_text().split()
    assert classifier.input_size == (32, 32)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    images = [paths[0], np.asarray(Image.open(paths[1])), Image.open(paths[2]), broken, str(paths[3])]
    results = classifier.classify(images, top_k=2)
    assert [r.file for r in results] == [str(paths[0]), "<image 1>", "<image 2>", str(broken), str(paths[3])]
    answered = [r for r in results if r.error is None]
    assert [r.label for r in answered] == [line["label"] for line in cli]
    for mine, line in zip(answered, cli, strict=True):
        np.testing.assert_allclose([s for _, s in mine.top], [t["score"] for t in line["top"]], atol=1e-6)
    assert results[3].error.startswith(f"{broken}: cannot be decoded as an image")
    probabilities = classifier.predict(paths)
    assert probabilities.shape == (4, 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=0.02)
