"""Classifiers other tools wrote, run by `edgetl classify` and `edgetl bench`: a .tflite with standard TFLite
metadata written with MediaPipe's own schema code (as Model Maker writes it: normalisation and labels inside),
a .tflite and an NCHW .onnx without any metadata (labels and normalisation from the flags).

The other tool's model is the tiny run's model behind a layer that turns `tf`-normalised input back into pixels,
so it must answer exactly as the run's own float32 file does once edgetl normalises the pixels for it."""

import io
import json
import zipfile

import numpy as np
import pytest

from tests.helpers import invoke
from tests.test_cli import assert_one_line_error

pytestmark = pytest.mark.slow


def standard_metadata(mean: float, std: float, label_file: str) -> bytes:
    """The TFLite metadata flatbuffer as another tool writes it: MediaPipe's generated schema code."""
    import flatbuffers

    schema = pytest.importorskip(
        "mediapipe.tasks.metadata.metadata_schema_py_generated", reason="mediapipe (extra interop) is not installed"
    )
    image = schema.ContentT()
    image.contentPropertiesType = schema.ContentProperties.ImageProperties
    image.contentProperties = schema.ImagePropertiesT()
    image.contentProperties.colorSpace = schema.ColorSpaceType.RGB
    normalization = schema.ProcessUnitT()
    normalization.optionsType = schema.ProcessUnitOptions.NormalizationOptions
    normalization.options = schema.NormalizationOptionsT()
    normalization.options.mean, normalization.options.std = [mean], [std]
    pixels = schema.TensorMetadataT()
    pixels.name, pixels.content, pixels.processUnits = "image", image, [normalization]
    labels = schema.AssociatedFileT()
    labels.name, labels.type = label_file, schema.AssociatedFileType.TENSOR_AXIS_LABELS
    scores = schema.TensorMetadataT()
    scores.name, scores.associatedFiles = "probability", [labels]
    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [pixels], [scores]
    model = schema.ModelMetadataT()
    model.name, model.subgraphMetadata, model.minParserVersion = "other tool's classifier", [subgraph], "1.0.0"
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"M001")
    return bytes(builder.Output())


def with_metadata(flatbuffer: bytes, metadata: bytes, files: dict[str, str]) -> bytes:
    """The model with a TFLITE_METADATA buffer (TensorFlow's own schema code) and its associated files zipped."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "TFLITE_METADATA", len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"TFL3")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:
        for name, text in files.items():
            bundle.writestr(name, text)
    return bytes(builder.Output()) + archive.getvalue()


@pytest.fixture(scope="module")
def other_tools(exported_run, tmp_path_factory):
    """Files as other tools write them: `plain.tflite` and `plain_nchw.onnx` carry nothing,
    `with_metadata.tflite` carries standard metadata (mean 127.5, std 127.5: the `tf` normalisation)."""
    import keras
    import tensorflow as tf
    import tf2onnx

    from edgetl.run import load_keras_model

    folder = tmp_path_factory.mktemp("other-tools")
    model = load_keras_model(exported_run / "model.keras", trust_model=False)
    normalised = keras.Input(model.input_shape[1:])
    raw = keras.layers.Rescaling(127.5, offset=127.5)(normalised)  # tf normalisation undone
    other = keras.Model(normalised, model(raw))
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(other).convert()
    (folder / "plain.tflite").write_bytes(flatbuffer)
    labels = (exported_run / "labels.txt").read_text()
    (folder / "labels.txt").write_text(labels)
    tagged = with_metadata(flatbuffer, standard_metadata(127.5, 127.5, "labels.txt"), {"labels.txt": labels})
    (folder / "with_metadata.tflite").write_bytes(tagged)
    signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input")]
    tf2onnx.convert.from_keras(
        other, input_signature=signature, opset=17, inputs_as_nchw=["input"], output_path=str(folder / "nchw.onnx")
    )
    return folder


def classified(*args) -> list[dict]:
    result = invoke("classify", *args, "--json", "--top-k", 3)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def assert_same_answers(ours: list[dict], theirs: list[dict], atol: float = 1e-4) -> None:
    assert [line["label"] for line in theirs] == [line["label"] for line in ours]
    for mine, other in zip(ours, theirs, strict=True):
        scores = [entry["score"] for entry in mine["top"]]
        np.testing.assert_allclose([entry["score"] for entry in other["top"]], scores, atol=atol)


def test_a_tflite_with_standard_metadata_runs_as_it_is(exported_run, other_tools, sample_dir):
    ours = classified(exported_run / "exports" / "model_float32.tflite", sample_dir)
    assert_same_answers(ours, classified(other_tools / "with_metadata.tflite", sample_dir))


def test_files_without_metadata_run_with_labels_and_normalization_flags(exported_run, other_tools, sample_dir):
    ours = classified(exported_run / "exports" / "model_float32.tflite", sample_dir)
    flags = ("--labels", other_tools / "labels.txt", "--normalization", "tf")
    assert_same_answers(ours, classified(other_tools / "plain.tflite", sample_dir, *flags))
    # PyTorch-style channels-first ONNX input is transposed for it.
    assert_same_answers(ours, classified(other_tools / "nchw.onnx", sample_dir, *flags))


def test_what_is_missing_is_named(exported_run, other_tools, sample_dir, tmp_path):
    image = sorted((sample_dir / "zero").iterdir())[0]
    plain = other_tools / "plain.tflite"
    assert_one_line_error(invoke("classify", plain, image), "carries no labels", "--labels FILE")
    result = invoke("classify", plain, image, "--labels", other_tools / "labels.txt")
    assert_one_line_error(result, "does not say how pixels are normalised", "--normalization raw|tf|torch|caffe")
    short = tmp_path / "short.txt"
    short.write_text("zero\none\n")
    result = invoke("classify", plain, image, "--labels", short, "--normalization", "tf")
    assert_one_line_error(result, "names 2 classes, but plain.tflite outputs 10 scores")
    # A file that says it itself does not take the flags.
    result = invoke("classify", other_tools / "with_metadata.tflite", image, "--normalization", "tf")
    assert_one_line_error(result, "--normalization", "standard TFLite metadata", "omit it")
    edgetl_file = exported_run / "exports" / "model.onnx"
    result = invoke("classify", edgetl_file, image, "--labels", other_tools / "labels.txt")
    assert_one_line_error(result, "is an edgetl file", "omit --labels")


def test_bench_runs_other_tools_files_beside_edgetl_files(exported_run, other_tools, sample_dir, tmp_path):
    out = tmp_path / "bench.json"
    ours = exported_run / "exports" / "model_float32.tflite"
    result = invoke(
        "bench", ours, other_tools / "plain.tflite", "--images", sample_dir, "--labels", other_tools / "labels.txt",
        "--normalization", "tf", "--runs", 3, "--warmup", 0, "--json", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert len(rows) == 2 and rows[0]["images"] == rows[1]["images"] == 90
    assert rows[1]["top1"] == rows[0]["top1"]
