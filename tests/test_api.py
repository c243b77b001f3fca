"""The public Python API (edgetl.train, edgetl.export, edgetl.bench): the typed results the CLI prints, options
checked as the CLI checks them, and `import edgetl` without TensorFlow. The shared `trained` and `exported`
fixtures (tests/conftest.py) are made by edgetl.train and edgetl.export themselves."""

import json
import subprocess
import sys
import textwrap

import pytest

import edgetl
from edgetl.errors import EdgetlError, UsageError

DIGITS = ["eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero"]


def test_import_edgetl_is_light_and_the_api_are_plain_functions_once_the_packages_are_imported():
    code = textwrap.dedent(
        """
        import inspect, json, sys, types
        import edgetl
        light = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "onnx", "numpy"))
        import edgetl.training.augment, edgetl.exporting.formats
        api = [edgetl.train, edgetl.resume, edgetl.export, edgetl.bench, edgetl.sample_data]
        print(json.dumps({
            "light": light,
            "functions": [inspect.isfunction(function) for function in api],
            "plain modules": sorted({type(m).__name__ for n, m in sys.modules.items() if n.startswith("edgetl")}),
        }))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer == {"light": [], "functions": [True] * 5, "plain modules": ["module"]}


def test_unknown_options_are_refused_naming_the_valid_ones(tmp_path):
    with pytest.raises(UsageError, match="unknown option 'epoch'.*epochs"):
        edgetl.train(tmp_path, tmp_path / "run", epoch=3)
    with pytest.raises(UsageError, match="unknown option 'thread'.*calibration_samples"):
        edgetl.export(tmp_path, thread=2)
    with pytest.raises(UsageError, match="unknown option 'run'.*runs"):
        edgetl.bench(tmp_path, run=3)


def test_bench_asks_for_images_with_model_files(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"not read")
    with pytest.raises(UsageError, match="model files need --images"):
        edgetl.bench(model)


@pytest.mark.slow
def test_train_returns_the_run_and_its_figures(trained, trained_run, sample_dir):
    assert trained.run.path == trained_run
    assert trained.class_names == DIGITS
    assert trained.layout == "folder"
    assert sum(trained.counts.values()) == 90 and set(trained.counts) == {"train", "validation", "test"}
    assert trained.epochs_run == 1 and 0.0 <= trained.test_accuracy <= 1.0
    config = trained.run.read_config()
    assert (config.data_dir, config.image_size, config.alpha, config.epochs) == (str(sample_dir), 32, 0.35, 1)
    assert config.learning_rate == type(config).learning_rate  # what was not given keeps TrainConfig's default


@pytest.mark.slow
def test_export_returns_one_verified_record_per_format(exported, trained_run):
    assert exported.root == trained_run
    assert [r.format for r in exported.records] == ["tflite-float32", "tflite-int8", "onnx"]
    for record in exported.records:
        assert (trained_run / record.path).is_file() and record.size_bytes == (trained_run / record.path).stat().st_size
        assert record.min_agreement == 0.0 and 0.0 <= record.agreement <= 1.0
    assert exported.problems == []
    index = {r["format"]: r for r in json.loads((trained_run / "exports.json").read_text())}
    assert {r.format: r.sha256 for r in exported.records} == {name: index[name]["sha256"] for name in index}


@pytest.mark.slow
def test_export_options_are_checked_against_the_formats_before_any_work(exported_run):
    with pytest.raises(EdgetlError, match="--io-type applies to tflite-int8"):
        edgetl.export(exported_run, formats="onnx", io_type="uint8")


@pytest.mark.slow
def test_bench_of_model_files_returns_a_row_per_file_and_thread_count(exported_run, sample_dir):
    models = [exported_run / "exports" / name for name in ("model_int8.tflite", "model.onnx")]
    report = edgetl.bench(*models, images=sample_dir, threads=[1], runs=3, warmup=1)
    assert [row.format for row in report.rows] == ["tflite-int8", "onnx"]
    for row in report.rows:
        assert row.images == 90 and row.threads == 1 and row.host == "local"
        assert 0.0 <= row.top1 <= row.top5 <= 1.0 and row.latency.p50 > 0
    assert report.errors == [] and report.title.startswith("edgetl bench on ")


def test_the_api_functions_show_their_signatures_and_document_their_arguments():
    import inspect

    assert list(inspect.signature(edgetl.train).parameters) == ["data", "out", "overwrite", "verbose", "options"]
    assert list(inspect.signature(edgetl.export).parameters)[:2] == ["source", "formats"]
    for function in (edgetl.train, edgetl.resume, edgetl.export, edgetl.bench, edgetl.sample_data):
        assert "Args:" in function.__doc__ and "Returns:" in function.__doc__, function.__name__
        for name in inspect.signature(function).parameters:
            assert f"{name}:" in function.__doc__, (function.__name__, name)
