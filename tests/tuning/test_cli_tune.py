"""`edgetl tune` on the command line: bad input is one line and a non-zero exit, before any folder is made; the
API refuses what the CLI refuses."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import edgetl
from edgetl.cli import main
from edgetl.errors import UsageError
from edgetl.models.backbones import BACKBONES
from edgetl.tuning.result import TUNE_FILE


def tune(*args):
    return CliRunner().invoke(main, ["tune", *map(str, args)])


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_an_unknown_backbone_lists_the_choices(make_digits, tmp_path):
    out = tmp_path / "search"
    result = tune(make_digits(3), "--out", out, "--space", "backbone=mobilenetv5")
    assert_one_line_error(result, 2, "backbone=mobilenetv5: unknown backbone; choose from " + ", ".join(BACKBONES))
    assert not out.exists()


def test_a_format_the_bench_cannot_time_is_refused(make_digits, tmp_path):
    result = tune(make_digits(3), "--out", tmp_path / "s", "--format", "savedmodel")
    assert_one_line_error(result, 2, "'savedmodel' is not one of")


def test_missing_data_is_refused_before_the_folder_is_made(tmp_path):
    out = tmp_path / "search"
    result = tune(tmp_path / "nothing-here", "--out", out, "--weights", "none")
    assert_one_line_error(result, 1, "nothing-here")
    assert not out.exists()


def test_data_and_out_or_resume(tmp_path):
    assert_one_line_error(tune("--out", tmp_path), 2, "give DATA and --out DIR (or --resume DIR)")
    assert_one_line_error(tune("data", "--resume", tmp_path), 2, "--resume DIR takes no DATA or --out")
    assert_one_line_error(tune("--resume", tmp_path), 1, "no tune.json to resume")


def test_a_folder_holding_a_search_is_not_started_again(make_digits, tmp_path):
    (tmp_path / TUNE_FILE).write_text("{}")
    result = tune(make_digits(3), "--out", tmp_path, "--weights", "none")
    assert_one_line_error(result, 1, f"continue it with `edgetl tune --resume {tmp_path}`")


def test_a_damaged_tune_json_names_the_field(tmp_path):
    (tmp_path / TUNE_FILE).write_text(json.dumps({"data": 3}))
    assert_one_line_error(tune("--resume", tmp_path), 1, "tune.json field 'data' is 3")


def test_fine_tuning_needs_pretrained_weights(make_digits, tmp_path):
    result = tune(make_digits(3), "--out", tmp_path / "s", "--weights", "none", "--fine-tune-epochs", "2")
    assert_one_line_error(result, 2, "--fine-tune-epochs needs pretrained --weights")


def test_the_api_refuses_unknown_options_and_options_given_with_resume(tmp_path):
    with pytest.raises(UsageError, match="unknown option 'epoch'.*batch_size"):
        edgetl.tune(tmp_path, tmp_path / "s", epoch=3)
    with pytest.raises(UsageError, match="unknown option 'backbone'"):
        edgetl.tune(tmp_path, tmp_path / "s", backbone="mobilenetv2")  # the space chooses backbones
    with pytest.raises(UsageError, match="give no others"):
        edgetl.tune(tmp_path, tmp_path / "s", resume=True)
    with pytest.raises(UsageError, match="edgetl.tune: the constraint field 'percentile' is \"p95\""):
        edgetl.tune(tmp_path, tmp_path / "s", percentile="p95")
    with pytest.raises(UsageError, match="the option field 'finalists' is 0"):
        edgetl.tune(tmp_path, tmp_path / "s", finalists=0)


@pytest.mark.slow
def test_imagenet_weights_without_a_network_is_one_line_at_once(make_digits, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no cached download to fall back on
    out = tmp_path / "search"
    result = tune(make_digits(3), "--out", out, "--space", "backbone=mobilenetv2;alpha=0.35;size=32")
    assert_one_line_error(result, 1, "--weights imagenet: cannot download")
    assert not out.exists()
