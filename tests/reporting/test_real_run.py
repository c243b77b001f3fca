"""The page of a real run (the shared tiny run, trained and exported through the API): what train and export now
record for it (Keras' test predictions, both top-3 of each flipped image), and Keras' predictions computed for a
run that lacks them."""

from __future__ import annotations

import json

import pytest

from edgetl.exporting.verify import FLIPPED_TOP_K
from edgetl.reporting.page import write_report
from edgetl.run import RunDir
from edgetl.training.reports import TEST_PREDICTIONS
from tests.reporting.parse import Page

pytestmark = pytest.mark.slow


def test_train_records_keras_top3_for_every_test_image(trained_run):
    run = RunDir(trained_run)
    predictions = json.loads((run.report_dir / TEST_PREDICTIONS).read_text())
    split = run.read_split()
    assert predictions["class_names"] == split.class_names
    assert [image["file"] for image in predictions["images"]] == [str(example.path) for example in split.test]
    assert [image["label"] for image in predictions["images"]] == [split.class_names[e.label] for e in split.test]
    for image in predictions["images"]:
        probabilities = [p for _, p in image["top"]]
        assert len(image["top"]) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert {name for name, _ in image["top"]} <= set(split.class_names)


def test_export_records_both_top3_of_each_flipped_image(exported_run):
    for record in RunDir(exported_run).read_exports():
        images = record["flipped_images"]
        assert [image["file"] for image in images] == record["flipped_files"]
        for image in images:
            assert len(image["keras_top"]) == len(image["export_top"]) == FLIPPED_TOP_K
            assert image["keras_top"][0][0] != image["export_top"][0][0]  # the flip itself
            assert image["label"] is not None


def test_the_page_of_a_real_run_shows_what_its_files_record(exported_run):
    page = Page(write_report(exported_run).path)
    assert page.sections[:5] == ["dataset", "training", "evaluation", "exports", "flipped"]
    records = RunDir(exported_run).read_exports()
    assert sorted(page.files("flipped")) == sorted(f for r in records for f in r["flipped_files"])


def test_keras_predictions_are_computed_and_kept_for_a_run_without_them(exported_run, tmp_path):
    import shutil

    run = tmp_path / "older"
    shutil.copytree(exported_run, run)
    predictions = RunDir(run).report_dir / TEST_PREDICTIONS
    kept = json.loads(predictions.read_text())
    predictions.unlink()
    page = Page(write_report(run).path)
    computed = json.loads(predictions.read_text())
    assert [i["file"] for i in computed["images"]] == [i["file"] for i in kept["images"]]
    assert [i["top"][0][0] for i in computed["images"]] == [i["top"][0][0] for i in kept["images"]]
    wrong = [i["file"] for i in computed["images"] if i["top"][0][0] != i["label"]]
    assert sorted(page.files("evaluation")) == sorted(wrong)


@pytest.fixture
def outside_data(sample_dir, tmp_path):
    """Three classes of the sample digits, and labels in the model's output order."""
    import shutil

    for name in ("two", "one", "three"):
        shutil.copytree(sample_dir / name, tmp_path / "images" / name)
    (tmp_path / "labels.txt").write_text("two\none\nthree\n")
    return tmp_path


def test_exporting_an_outside_model_writes_its_page_with_the_export_sections(outside_data, tmp_path):
    from tests.exporting.test_outside_model import small_classifier
    from tests.helpers import invoke

    model = tmp_path / "notebook.keras"
    small_classifier(with_lambda=False, size=32).save(model)
    out = tmp_path / "out"
    result = invoke(
        "export", model, "--labels", outside_data / "labels.txt", "--calibration", outside_data / "images",
        "--out", out, "--formats", "tflite-float32,tflite-int8", "--calibration-samples", 12, "--min-agreement", 0,
        "--normalization", "tf",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page_path = out / "report" / "index.html"
    assert f"report: {page_path}" in result.output.splitlines()
    page = Page(page_path)
    assert page.sections[:2] == ["exports", "flipped"] and "dataset" not in page.sections
    records = RunDir(out).read_exports()
    assert sorted(page.files("flipped")) == sorted(f for r in records for f in r["flipped_files"])
    assert invoke("report", out).output == f"{page_path}\n"
