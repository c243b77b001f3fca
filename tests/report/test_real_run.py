"""The page of a real run (the shared tiny run, trained and exported through the API): what train and export now
record for it (Keras' test predictions, both top-3 of each flipped image), and Keras' predictions computed for a
run that lacks them."""

from __future__ import annotations

import json

import pytest

from edgetl.export.verify import FLIPPED_TOP_K
from edgetl.report.page import write_report
from edgetl.run import RunDir
from edgetl.train.reports import TEST_PREDICTIONS
from tests.report.parse import Page

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
