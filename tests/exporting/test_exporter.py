"""The exported files: what they hold, what they carry, and how close they are to Keras."""

import hashlib

import numpy as np
import pytest

from tests.helpers import records

pytestmark = pytest.mark.slow


def test_exports_json_describes_each_file(exported_run):
    index = records(exported_run)
    assert set(index) == {"tflite-float32", "tflite-int8", "onnx"}
    for record in index.values():
        payload = (exported_run / record["path"]).read_bytes()
        assert record["size_bytes"] == len(payload)
        assert record["sha256"] == hashlib.sha256(payload).hexdigest()
        assert record["images"] == 10  # 9 per class, 15% -> 1 per class
        assert 0.0 <= record["agreement"] <= 1.0


def test_float_exports_match_keras(exported_run):
    index = records(exported_run)
    for name in ("tflite-float32", "onnx"):
        assert index[name]["max_probability_diff"] < 1e-4, name
        assert index[name]["input_dtype"] == "float32"


def test_int8_file_holds_int8_tensors(exported_run):
    from ai_edge_litert.interpreter import Interpreter

    path = exported_run / "exports" / "model_int8.tflite"
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    # uint8 at the edges by default (what MediaPipe and Android tooling accept), raw pixels taken exactly as they are.
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.uint8
    quantization = interpreter.get_input_details()[0]["quantization_parameters"]
    assert quantization["scales"][0] == 1.0 and quantization["zero_points"][0] == 0
    dtypes = [d["dtype"] for d in interpreter.get_tensor_details()]
    floats = [d for d in dtypes if d == np.float32]
    assert not floats, "a full-integer model has no float32 tensors"
    assert sum(d == np.int8 for d in dtypes) > len(dtypes) / 2
    index = records(exported_run)["tflite-int8"]
    assert index["input_dtype"] == "uint8" and index["output_dtype"] == "uint8"
    assert index["runtimes"] == ["LiteRT", "MediaPipe"]
    assert index["max_probability_diff"] < 0.1


def test_metadata_travels_inside_the_files(exported_run):
    from edgetl.runtime.engine import open_engine

    labels = (exported_run / "labels.txt").read_text().split()
    for filename in ("model_float32.tflite", "model_int8.tflite", "model.onnx"):
        engine = open_engine(exported_run / "exports" / filename)
        assert engine.labels == labels
        assert engine.input_size == (32, 32)
        assert engine.metadata.normalization.mode == "tf"
        assert engine.metadata.model_format in {"tflite-float32", "tflite-int8", "onnx"}


def test_onnx_graph_has_named_input_and_dynamic_batch(exported_run):
    import onnx

    model = onnx.load(str(exported_run / "exports" / "model.onnx"))
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == "pixels" and graph_output.name == "probabilities"
    batch = graph_input.type.tensor_type.shape.dim[0]
    assert batch.dim_value == 0 and batch.dim_param  # symbolic, not fixed
    assert {p.key for p in model.metadata_props} >= {"edgetl.json", "labels"}


def test_runtime_batches_give_the_same_answer_as_single_images(exported_run, sample_dir):
    from edgetl.runtime.engine import open_engine
    from edgetl.runtime.image import load_images

    paths = sorted((sample_dir / "two").iterdir())[:4]
    pixels, _, _ = load_images(paths, (32, 32))
    for filename in ("model_float32.tflite", "model_int8.tflite", "model.onnx"):
        engine = open_engine(exported_run / "exports" / filename)
        together = engine.predict(pixels)
        one_by_one = np.concatenate([engine.predict(pixels[i : i + 1]) for i in range(len(pixels))])
        np.testing.assert_allclose(together, one_by_one, atol=1e-5)
        np.testing.assert_allclose(together.sum(axis=1), 1.0, atol=0.05)


def test_each_files_engine_and_each_finished_kinds_cache_are_let_go(trained_run, tmp_path, monkeypatch):
    """A verified file's record is kept to the end, its engine (model and activation arena) is not: when the next
    file is opened, no engine opened before is still alive (a ladder opens one an attempt). ONNX files are made
    first (tf2onnx needs the most memory), and what their converters cached (graphs, calibrations,
    measurements) goes once no ONNX format is left; the records keep the order asked for."""
    import gc
    import shutil
    import weakref

    import edgetl
    from edgetl.exporting import written
    from edgetl.exporting.formats import ConversionInputs

    opened, alive_at_open, suffixes = [], [], []
    open_engine = written.open_engine

    def tracked(path):
        gc.collect()
        alive_at_open.append(sum(engine() is not None for engine in opened))
        suffixes.append(path.suffix)
        engine = open_engine(path)
        opened.append(weakref.ref(engine))
        return engine

    cached = []
    keep_only = ConversionInputs.keep_only

    def recorded(inputs, kinds):
        gone = keep_only(inputs, kinds)
        cached.append(sorted({key[0] if isinstance(key, tuple) else key for key in inputs.cache}))
        return gone

    monkeypatch.setattr(written, "open_engine", tracked)
    monkeypatch.setattr(ConversionInputs, "keep_only", recorded)
    # A copy without the session's exports: the session's run keeps its own, and this export's are the only ones.
    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("exports", "exports.json"))
    result = edgetl.export(run, formats=["tflite-int8", "onnx-int8"], calibration_samples=20, min_agreement=0.0)
    assert len(opened) >= 2 and set(alive_at_open) == {0}
    assert suffixes[0] == ".onnx" and suffixes[-1] == ".tflite"
    assert [record.format for record in result.records] == ["tflite-int8", "onnx-int8"]
    assert list(records(run)) == ["tflite-int8", "onnx-int8"]  # exports.json: the registry's order, not the making
    assert "onnx" not in cached[0] and "bias-correction-input-sums" in cached[0]


def test_the_onnx_ladder_converts_the_model_once_and_writes_its_corrections_in(trained_run, tmp_path, monkeypatch):
    """The float ONNX file's graph is the only tf2onnx conversion: each bias-corrected rung's graph is that graph
    with the rung's corrections written into the folded biases, found by their values."""
    import shutil

    import edgetl
    from edgetl.exporting import onnx

    converted = []
    convert_onnx = onnx.convert_onnx

    def counted(model, *args, **kwargs):
        converted.append(model)
        return convert_onnx(model, *args, **kwargs)

    monkeypatch.setattr(onnx, "convert_onnx", counted)
    run = shutil.copytree(trained_run, tmp_path / "run")
    result = edgetl.export(run, formats=["onnx", "onnx-int8"], calibration_samples=20, min_agreement=0.0)
    attempts = {record.format: record for record in result.records}["onnx-int8"].attempts
    assert attempts[0]["bias_correction"] and attempts[0]["passed"]
    assert len(converted) == 1


def test_the_onnx_ranking_takes_its_reference_from_the_rung_without_bias_correction(trained_run, tmp_path, monkeypatch):
    """onnxruntime's pre-processing runs once for each graph the ladder calibrates and never again for the ranking:
    its reference (the model's float graph uncorrected) is the file the rung without bias correction pre-processed
    (pre-processing an Xception again peaked 540 MB above its own start)."""
    import shutil

    import onnx as onnx_lib

    import edgetl
    from edgetl.exporting import int8, onnx

    made, calibrations, rankings = [], [], []
    calibration_init, pre_processed, rank_calibrated = (
        onnx.OnnxCalibration.__init__,
        onnx.pre_processed,
        onnx.rank_calibrated,
    )

    def counted_calibration(self, *args, **kwargs):
        calibrations.append(self)
        calibration_init(self, *args, **kwargs)

    def counted_pre_processing(float_model, work):
        path, graph = pre_processed(float_model, work)
        made.append(graph.SerializeToString())
        return path, graph

    def recorded_ranking(calibration, method, target, plain_prepared=None):
        ranked = onnx_lib.load(str(calibration.prepared)).SerializeToString()
        rankings.append((ranked, onnx_lib.load(str(plain_prepared)).SerializeToString() if plain_prepared else None))
        return rank_calibrated(calibration, method, target, plain_prepared)

    monkeypatch.setattr(onnx.OnnxCalibration, "__init__", counted_calibration)
    monkeypatch.setattr(onnx, "pre_processed", counted_pre_processing)
    monkeypatch.setattr(onnx, "rank_calibrated", recorded_ranking)
    monkeypatch.setattr(int8, "settled", lambda trial, target: False)  # every rung is climbed, the ranking too
    monkeypatch.setattr(int8, "_better", lambda candidate, best, target: best is None)  # on the first: corrected
    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("exports", "exports.json"))
    result = edgetl.export(run, formats=["onnx-int8"], calibration_samples=20, min_agreement=0.0)
    attempts = result.records[0].attempts
    assert attempts[0]["bias_correction"] and not attempts[1]["bias_correction"]
    assert any(attempt["float_layers"] for attempt in attempts)
    assert len(made) == len(calibrations) >= 2  # once a calibrated graph, never for the ranking
    ((ranked, reference),) = rankings
    assert reference is not None and reference != ranked  # the plain graph, not the corrected one ranked
    assert made.count(reference) == 1  # the plain graph, pre-processed by the rung without bias correction alone


def test_other_programs_run_a_file_while_edgetl_verifies_it_and_stop_when_the_ladder_climbs_on(
    trained_run, tmp_path, monkeypatch
):
    """MediaPipe's children start as soon as a file is written and run while LiteRT (one core by default) verifies
    it; an attempt the ladder climbs past has its children stopped at once, and the file kept in the end gets its
    figures (run again where its children were stopped)."""
    import shutil

    import edgetl
    from edgetl.exporting import consumers, exporter, int8

    events = []

    class Started:
        def __init__(self, path, photos, classes):
            self.path, self.scores = path, np.full((len(photos), classes), 1.0 / classes, np.float32)
            events.append(("start", path.name))

        def result(self):
            events.append(("result", self.path.name))
            return self.scores

        def stop(self):
            events.append(("stop", self.path.name))

    dtypes = frozenset({"float32", "uint8"})
    fake = consumers.Consumer("fake", "default", frozenset({"tflite"}), dtypes, "numpy", Started)
    monkeypatch.setattr(consumers, "consumers_for", lambda kind, dtype: [fake] if kind == "tflite" else [])
    go_on = exporter.OrderedRun.go_on

    def predicting(run, *args, **kwargs):
        events.append(("verify", None))
        return go_on(run, *args, **kwargs)

    monkeypatch.setattr(exporter.OrderedRun, "go_on", predicting)
    monkeypatch.setattr(int8, "settled", lambda trial, target: False)  # the ladder climbs every rung
    run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("exports", "exports.json"))
    result = edgetl.export(
        run, formats=["tflite-float32", "tflite-int8"], calibration_samples=20, min_agreement=0.0, int8_fallback="none"
    )
    float32 = events[: events.index(("result", events[0][1])) + 1]
    assert float32 == [("start", float32[0][1]), ("verify", None), ("result", float32[0][1])]
    ladder = events[len(float32) :]
    attempts = len(result.records[1].attempts)
    assert attempts >= 2
    # Each attempt: started, verified, stopped as the ladder climbs on; then the kept file's children again.
    for number in range(attempts):
        assert ladder[3 * number : 3 * number + 3] == [
            ("start", f"{number}.tflite"),
            ("verify", None),
            ("stop", f"{number}.tflite"),
        ]
    assert [event for event, _ in ladder[3 * attempts :]] == ["start", "result"]
    assert all(any(where["runtime"] == "fake" for where in record.verified_on) for record in result.records)


def _tflite_buffers(path) -> list[bytes]:
    """A TFLite file's buffers other than its metadata's: the converter writes a few bytes of conversion metadata
    that differ from one conversion to the next."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    metadata = {model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    buffers = (model.Buffers(i) for i in range(model.BuffersLength()) if i not in metadata)
    return [buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b"" for buffer in buffers]


def test_attempts_stopped_early_then_run_to_the_end_give_the_records_of_attempts_run_whole(
    trained_run, tmp_path, monkeypatch
):
    """Every attempt stops after its first image (as if it could not settle) and, no attempt settling, each is run
    to the end in a session of its own: the records are those of a climb that runs every attempt whole, and the
    files the same."""
    import shutil
    from dataclasses import asdict

    import edgetl
    from edgetl.exporting import int8

    monkeypatch.setattr(int8, "settled", lambda trial, target: False)  # the ladder climbs every rung
    records, files = {}, {}
    for name, stops in (("whole", False), ("stopped", True)):
        monkeypatch.setattr(int8, "cannot_matter", lambda *counts, stops=stops: stops)
        # At one path both times, as the records name the run's files.
        run = shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("exports", "exports.json"))
        result = edgetl.export(
            run, formats=["tflite-int8", "onnx-int8"], calibration_samples=20, min_agreement=0.0, int8_fallback="none"
        )
        records[name] = [asdict(record) for record in result.records]
        files[name] = shutil.move(run / "exports", tmp_path / name)
        shutil.rmtree(run)
    for whole, stopped in zip(records["whole"], records["stopped"], strict=True):
        assert len(stopped["attempts"]) >= 2
        for attempt in whole["attempts"] + stopped["attempts"]:
            assert attempt.pop("seconds") >= 0 and attempt["images"] == whole["images"]
            # Known, not from stopping: an ONNX rung climbed past can come out a kilobyte larger or smaller from one
            # export to the next in one process (689,225 or 690,592 bytes here), with the same predictions. The
            # file kept is compared whole below.
            attempt.pop("size_bytes")
        if whole["format"].startswith("tflite"):
            assert _tflite_buffers(files["whole"] / whole["path"].split("/")[-1]) == _tflite_buffers(
                files["stopped"] / stopped["path"].split("/")[-1]
            )
            whole.pop("sha256"), stopped.pop("sha256")
        assert stopped == whole
