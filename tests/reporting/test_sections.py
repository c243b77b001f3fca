"""Each section of the page from a synthetic run directory: present when its data is, and showing that data."""

from __future__ import annotations

import json
import re

import pytest

from edgetl.errors import ModelFileError
from edgetl.reporting.page import write_report
from edgetl.run import RunDir
from edgetl.training.reports import TEST_PREDICTIONS
from tests.reporting.conftest import CLASSES, make_run
from tests.reporting.parse import Page


def page_of(run) -> Page:
    return Page(write_report(run.path).path)


def test_a_full_run_has_every_section_in_order(synthetic_run):
    written = write_report(synthetic_run.path)
    assert written.path == synthetic_run.path / "report" / "index.html"
    assert written.size_bytes == written.path.stat().st_size
    assert Page(written.path).sections == ["dataset", "training", "evaluation", "exports", "flipped", "bench"]


def test_dataset_section_counts_each_subset_and_shows_samples_and_skipped_files(synthetic_run):
    page = page_of(synthetic_run)
    table = page.source.split('id="dataset"')[1].split("</table>")[0]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)][1:]
    assert rows[:3] == [[name, "6", "6", "6", "18"] for name in CLASSES]
    assert rows[3] == ["all", "18", "18", "18", "54"]
    samples = [a for a in page.tags("span", "dataset") if "thumb" in a.get("class", "")]
    assert len(samples) == 6 * len(CLASSES)
    assert all("missing" not in a["class"] for a in samples)
    assert "1 file(s) skipped" in page.text("dataset") and "broken.png" in page.text("dataset")


def test_training_section_draws_both_stages_curves_and_gives_metrics_and_times(synthetic_run):
    page = page_of(synthetic_run)
    assert len(page.tags("svg", "training")) == 2  # loss and accuracy
    lines = page.tags("polyline", "training")
    assert len(lines) == 8  # 2 charts x 2 stages x (train, validation)
    assert sum("stroke-dasharray" in a for a in lines) == 4  # stage 2 dashed, after stage 1's 3 epochs
    assert len(page.tags("circle", "training")) == 2 * 2 * (3 + 2)
    assert len([a for a in page.tags("line", "training") if a.get("class") == "divider"]) == 2
    text = page.text("training")
    for expected in ("0.7500", "0.6000", "0.7400", "12.5", "30.2", "stage1", "stage2"):
        assert expected in text


def test_evaluation_section_has_the_confusion_matrix_per_class_scores_and_keras_mistakes(synthetic_run):
    page = page_of(synthetic_run)
    predictions = json.loads((synthetic_run.path / "report" / TEST_PREDICTIONS).read_text())
    matrix = page.source.split('class="matrix"')[1].split("</table>")[0]
    counts = [int(n) for n in re.findall(r">(\d+)</td>", matrix)]
    assert sum(counts) == len(predictions["images"]) == 18
    assert sorted(page.files("evaluation")) == sorted(synthetic_run.wrong)
    shown = page.files("evaluation")
    confidence = {i["file"]: i["top"][0][1] for i in predictions["images"]}
    assert [confidence[f] for f in shown] == sorted((confidence[f] for f in shown), reverse=True)
    assert "0.7000" in page.text("evaluation") and "macro avg" in page.text("evaluation")


def test_exports_section_has_one_card_per_file_with_its_ladder_and_float_layers(synthetic_run):
    page = page_of(synthetic_run)
    cards = [a for a in page.tags("div", "exports") if "export" in a.get("class", "").split()]
    assert len(cards) == 2
    assert [a["class"] for a in cards] == ["card export", "card export failed"]
    text = page.text("exports")
    for expected in ("tflite-int8", "onnx-int8", "uint8 / uint8", "97.00%", "percentile-20+bias+1 float",
                     "block_1_depthwise", "LOGISTIC x1", "not integer-only", "-10.0", "converter", "portable",
                     "verified on 2 runtime(s)", "pi@board", "arm64", "stopped after 4 images"):  # fmt: skip
        assert expected in text, expected


def test_flipped_section_shows_each_files_flips_with_both_top3_surest_keras_first(synthetic_run):
    page = page_of(synthetic_run)
    records = {r["format"]: r for r in RunDir(synthetic_run.path).read_exports()}
    shown = page.files("flipped")
    expected = [image["file"] for r in records.values() for image in r["flipped_images"]]
    assert sorted(shown) == sorted(expected)
    start = 0
    for record in records.values():
        part = shown[start : start + len(record["flipped_images"])]
        start += len(part)
        by_file = {image["file"]: image for image in record["flipped_images"]}
        assert set(part) == set(by_file)
        confidence = [by_file[f]["keras_top"][0][1] for f in part]
        assert confidence == sorted(confidence, reverse=True)
    lists = page.tags("ol", "flipped")
    assert len(lists) == 2 * len(shown)  # Keras' top-3 and the file's
    text = page.text("flipped")
    first = records["tflite-int8"]["flipped_images"][0]
    assert f"{first['export_top'][0][1]:.3f}" in text and f"{first['keras_top'][0][1]:.3f}" in text


def test_flipped_section_of_an_older_export_shows_the_listed_files_and_says_top3_is_missing(tmp_path):
    synthetic = make_run(tmp_path)
    index = RunDir(synthetic.path).exports_index
    records = json.loads(index.read_text())
    for record in records:
        del record["flipped_images"]
    index.write_text(json.dumps(records))
    page = page_of(synthetic)
    assert sorted(page.files("flipped")) == sorted(f for files in synthetic.flipped.values() for f in files)
    assert "export again" in page.text("flipped")


def test_bench_section_plots_one_point_per_format_threads_and_host(synthetic_run):
    page = page_of(synthetic_run)
    local, board = page.tags("circle", "bench"), page.tags("rect", "bench")  # a marker shape per machine
    assert len(local) == 3 and len(board) == 1
    assert len({a["fill"] for a in local + board}) == 2  # a colour per format: keras, tflite-int8
    legend = page.text("bench")
    assert "desktop (x86_64)" in legend and "pi@board (aarch64)" in legend
    assert "tflite-int8, 4 thread(s), pi@board" in page.source
    rows = re.findall(r"<tr>", page.source.split('id="bench"')[1].split("</table>")[0])
    assert len(rows) == 1 + 4


def test_sections_without_their_data_are_left_out(tmp_path):
    synthetic = make_run(tmp_path, formats=(), bench=False)
    (synthetic.path / "history.json").unlink()
    (synthetic.path / "metrics.json").unlink()
    assert page_of(synthetic).sections == ["dataset", "evaluation"]


def test_missing_test_predictions_without_tensorflow_or_model_are_a_note_not_an_error(tmp_path):
    synthetic = make_run(tmp_path, predictions=False)
    assert not (synthetic.path / "model.keras").exists()
    page = page_of(synthetic)
    assert page.files("evaluation") == []
    assert "test_predictions.json is not in this run" in page.text("evaluation")
    assert "macro avg" in page.text("evaluation")  # the classification report is still shown


def test_an_outside_models_export_folder_gets_the_export_sections(tmp_path):
    synthetic = make_run(tmp_path)
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "exports.json").write_text((synthetic.path / "exports.json").read_text())
    page = page_of(type(synthetic)(folder, [], []))
    assert page.sections == ["exports", "flipped"]
    assert sorted(page.files("flipped")) == sorted(f for files in synthetic.flipped.values() for f in files)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda run: (run / "exports.json").write_text("[{"), "exports.json: not readable JSON"),
        (lambda run: (run / "metrics.json").write_text("[1, 2]"), "metrics.json: expected a JSON dict, found list"),
        (lambda run: (run / "split.json").write_text("{}"), "split.json: the split lacks the field 'root'"),
    ],
)
def test_a_damaged_run_file_is_named(tmp_path, damage, message):
    synthetic = make_run(tmp_path)
    damage(synthetic.path)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        write_report(synthetic.path)


def test_a_folder_that_is_neither_run_nor_export_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="neither an edgetl run"):
        write_report(tmp_path)
    with pytest.raises(ModelFileError, match="no such run directory"):
        write_report(tmp_path / "absent")


def test_fields_of_the_wrong_type_show_as_absent_instead_of_failing(tmp_path):
    synthetic = make_run(tmp_path)
    run = RunDir(synthetic.path)
    records = json.loads(run.exports_index.read_text())
    records[0].update(
        flipped_images=[{"file": synthetic.test_files[0], "label": 3, "keras_top": "high", "export_top": [["a", "x"]]}],
        float_ops=["LOGISTIC"], attempts={"recipe": 1}, per_class_accuracy_change=[1], size_bytes="big",
        agreement="most", problems="one", float_layers=7, runtimes=None,
    )  # fmt: skip
    run.exports_index.write_text(json.dumps(records))
    run.history.write_text(json.dumps({"stage1": {"loss": ["a", "b"]}, "stage2": [1]}))
    metrics = json.loads(run.metrics.read_text())
    metrics.update(epochs=[3], stage_seconds={"stage1": "long"}, skipped=5, test_accuracy="good")
    run.metrics.write_text(json.dumps(metrics))
    (run.report_dir / TEST_PREDICTIONS).write_text(json.dumps({"images": {"a": 1}}))
    page = page_of(synthetic)
    assert page.sections == ["dataset", "training", "evaluation", "exports", "flipped", "bench"]
    assert page.files("flipped")[0] == synthetic.test_files[0]
    assert "most" in page.text("exports") and "long" in page.text("training")


def test_a_gallery_shows_its_first_images_and_counts_the_rest(tmp_path):
    from edgetl.reporting.sections import MOST_GALLERY_IMAGES

    per_class = MOST_GALLERY_IMAGES // len(CLASSES) + 5
    synthetic = make_run(tmp_path, per_class=per_class, flip_every=1, formats=("tflite-int8",), bench=False)
    page = page_of(synthetic)
    flipped = len(synthetic.flipped["tflite-int8"])
    assert len(page.files("flipped")) == MOST_GALLERY_IMAGES < flipped
    assert f"{flipped - MOST_GALLERY_IMAGES} more flipped images not shown" in page.text("flipped")
