"""Standard TFLite metadata in every exported .tflite: read back by the schema's own generated reader, by edgetl's
TensorFlow-free reader, by LiteRT (unchanged outputs) and by MediaPipe's ImageClassifier."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest

from edgetl.errors import ModelFileError
from edgetl.exporting.metadata import attach_to_tflite, min_parser_version
from edgetl.runtime.metadata import LABELS_FILE, METADATA_KEY, ModelMetadata, Normalization, read_tflite_metadata
from edgetl.runtime.tflite_metadata import METADATA_NAME, metadata_buffer, read_standard_metadata

SIZE = 16
LABELS = ["cat", "dog", "bird"]
FORMATS = ["float32", "float16", "dynamic", "int8", "uint8"]


@pytest.fixture(scope="module")
def converted() -> dict[str, bytes]:
    """A tiny raw-pixel classifier converted the ways edgetl converts (int8 and uint8: integer input and output)."""
    import keras

    from edgetl.exporting import tflite

    keras.utils.set_random_seed(0)
    pixels = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(pixels)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(pixels, keras.layers.Dense(len(LABELS), activation="softmax")(x))
    calibration = np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
    return {
        "float32": tflite.convert_float32(model),
        "float16": tflite.convert_float16(model),
        "dynamic": tflite.convert_dynamic(model),
        "int8": tflite.convert_int8(model, calibration, "int8"),
        "uint8": tflite.convert_int8(model, calibration, "uint8"),
    }


def edgetl_metadata(model_format: str) -> ModelMetadata:
    return ModelMetadata(
        labels=LABELS,
        input_size=(SIZE, SIZE),
        normalization=Normalization(mode="tf", scale=1 / 127.5, offset=-1.0),
        backbone="tiny",
        model_format=f"tflite-{model_format}",
    )


@pytest.fixture(scope="module")
def written(converted, tmp_path_factory) -> dict[str, tuple[bytes, object]]:
    """Each converted model with its metadata attached: (the plain flatbuffer, the path of the written file)."""
    folder = tmp_path_factory.mktemp("tflite-metadata")
    files = {}
    for model_format, flatbuffer in converted.items():
        path = folder / f"model_{model_format}.tflite"
        path.write_bytes(attach_to_tflite(flatbuffer, edgetl_metadata(model_format)))
        files[model_format] = (flatbuffer, path)
    return files


def schema_reader():
    return pytest.importorskip(
        "mediapipe.tasks.metadata.metadata_schema_py_generated",
        reason="mediapipe (which ships metadata_schema.fbs' generated reader) is not installed",
    )


@pytest.mark.parametrize("model_format", ["float32", "int8", "uint8"])
def test_the_schemas_own_reader_reads_it(written, model_format):
    schema = schema_reader()
    _, path = written[model_format]
    buffer = metadata_buffer(path.read_bytes())
    assert schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    assert buffer[4:8] == b"M001"
    root = schema.ModelMetadataT.InitFromPackedBuf(buffer, 0)

    assert root.name == b"tiny image classifier"
    assert root.minParserVersion == b"1.0.0"
    assert [(f.name, f.type) for f in root.associatedFiles] == [
        (METADATA_KEY.encode(), schema.AssociatedFileType.UNKNOWN)
    ]
    (subgraph,) = root.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    assert image.content.contentPropertiesType == schema.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == schema.ColorSpaceType.RGB
    (unit,) = image.processUnits
    assert unit.optionsType == schema.ProcessUnitOptions.NormalizationOptions
    assert list(unit.options.mean) == [0.0] and list(unit.options.std) == [1.0]
    if model_format == "int8":  # Model Maker states no range for int8 tensors (they hold shifted pixels)
        assert image.stats is None
    else:
        assert list(image.stats.min) == [0.0] and list(image.stats.max) == [255.0]

    (probabilities,) = subgraph.outputTensorMetadata
    assert probabilities.content.contentPropertiesType == schema.ContentProperties.FeatureProperties
    assert probabilities.stats is None and probabilities.description
    assert [(f.name, f.type) for f in probabilities.associatedFiles] == [
        (LABELS_FILE.encode(), schema.AssociatedFileType.TENSOR_AXIS_LABELS)
    ]


def test_named_files_are_stored_in_the_appended_zip(written):
    _, path = written["float32"]
    with zipfile.ZipFile(path) as archive:
        entries = {entry.filename: entry for entry in archive.infolist()}
        assert archive.read(LABELS_FILE).decode().splitlines() == LABELS
    assert set(entries) == {LABELS_FILE, METADATA_KEY}
    # MediaPipe maps associated files in place and refuses compressed entries.
    assert all(entry.compress_type == zipfile.ZIP_STORED for entry in entries.values())
    metadata = read_standard_metadata(path)
    assert {file.name for file in metadata.associated_files} == set(entries)


def _run(model: bytes, pixels: np.ndarray):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    (given,) = interpreter.get_input_details()
    (produced,) = interpreter.get_output_details()
    interpreter.set_tensor(given["index"], pixels.astype(given["dtype"]))
    interpreter.invoke()
    described = [
        (detail["name"], detail["shape"].tolist(), np.dtype(detail["dtype"]).name, detail["quantization"])
        for detail in (given, produced)
    ]
    return interpreter.get_tensor(produced["index"]), described


@pytest.mark.parametrize("model_format", FORMATS)
def test_litert_outputs_are_bit_identical(written, model_format):
    flatbuffer, path = written[model_format]
    pixels = np.random.default_rng(1).integers(0, 256, (1, SIZE, SIZE, 3))
    if model_format == "int8":
        pixels = pixels - 128
    plain, plain_tensors = _run(flatbuffer, pixels)
    with_metadata, tensors = _run(path.read_bytes(), pixels)
    assert tensors == plain_tensors
    assert with_metadata.dtype == plain.dtype and np.array_equal(with_metadata, plain)


def test_weights_stay_aligned(written):
    """TFLite's schema asks for Buffer.data aligned to 16 bytes (the generated Python packer would not)."""
    from tensorflow.lite.python import schema_py_generated as schema

    data = written["int8"][1].read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    starts = []
    for index in range(model.BuffersLength()):
        buffer = model.Buffers(index)
        if buffer.DataLength():
            starts.append(buffer._tab.Vector(buffer._tab.Offset(4)))
    assert len(starts) > 3 and all(start % 16 == 0 for start in starts)


@pytest.mark.parametrize("model_format", ["float32", "int8"])
def test_edgetl_reader_agrees(written, model_format):
    _, path = written[model_format]
    metadata = read_standard_metadata(path)
    assert metadata.name == "tiny image classifier"
    assert metadata.min_parser_version == "1.0.0"
    assert metadata.color_space == "RGB"
    assert (metadata.mean, metadata.std) == ((0.0,), (1.0,))
    assert (metadata.input_min, metadata.input_max) == (
        ((0.0,), (255.0,)) if model_format == "float32" else (None, None)
    )
    assert metadata.label_file == LABELS_FILE and metadata.labels == tuple(LABELS)
    assert {(file.name, file.type) for file in metadata.associated_files} == {
        (METADATA_KEY, "UNKNOWN"),
        (LABELS_FILE, "TENSOR_AXIS_LABELS"),
    }
    assert read_standard_metadata(path.read_bytes()) == metadata
    # edgetl's own record still reads.
    assert read_tflite_metadata(path) == edgetl_metadata(model_format)


def test_a_plain_converter_output_has_none(written, tmp_path):
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(written["float32"][0])
    assert read_standard_metadata(plain) is None


def test_attaching_again_replaces_the_metadata(written):
    from tensorflow.lite.python import schema_py_generated as schema

    flatbuffer, path = written["float32"]
    again = attach_to_tflite(path.read_bytes(), edgetl_metadata("float32"))
    model = schema.Model.GetRootAs(again, 0)
    names = [model.Metadata(index).Name() for index in range(model.MetadataLength())]
    assert names.count(METADATA_NAME.encode()) == 1
    assert model.BuffersLength() == schema.Model.GetRootAs(path.read_bytes(), 0).BuffersLength()
    assert read_standard_metadata(again).labels == tuple(LABELS)


def _damaged(data: bytes, how: str) -> bytes:
    payload = metadata_buffer(data)
    start = data.index(payload)
    damaged = bytearray(data)
    if how == "identifier":
        damaged[start + 4 : start + 8] = b"XXXX"
    elif how == "root offset":
        damaged[start : start + 4] = struct.pack("<I", 0x7FFFFFF0)
    elif how == "vector length":
        # The first vector after the root table's vtable: make its length run past the end.
        damaged[start : start + len(payload)] = payload.replace(b"\x00\x00\x00tiny", b"\xff\xff\x00tiny")
    elif how == "labels missing":
        archive = data.index(b"PK\x03\x04")
        rewritten = io.BytesIO(data[:archive])
        rewritten.seek(0, io.SEEK_END)
        with zipfile.ZipFile(rewritten, "a") as bundle:
            bundle.writestr(METADATA_KEY, "{}")
        return rewritten.getvalue()
    return bytes(damaged)


@pytest.mark.parametrize("how", ["identifier", "root offset", "vector length", "labels missing"])
def test_damaged_metadata_is_a_model_file_error(written, tmp_path, how):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(_damaged(written["float32"][1].read_bytes(), how))
    with pytest.raises(ModelFileError, match=r"broken\.tflite: the TFLite metadata is damaged") as caught:
        read_standard_metadata(broken)
    assert "\n" not in str(caught.value)


def test_mediapipe_image_classifier_reads_a_float32_file(written):
    pytest.importorskip("mediapipe.tasks.python.vision", reason="mediapipe is not installed")
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    flatbuffer, path = written["float32"]
    image = np.random.default_rng(2).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=3)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
    categories = result.classifications[0].categories
    expected, _ = _run(flatbuffer, image[np.newaxis].astype(np.float32))
    assert [category.category_name for category in categories] == [LABELS[i] for i in np.argsort(-expected[0])]
    assert [category.score for category in categories] == pytest.approx(sorted(expected[0], reverse=True), abs=1e-5)


def test_a_file_that_is_not_tflite_is_a_model_file_error(tmp_path):
    onnx_like = tmp_path / "model.tflite"
    onnx_like.write_bytes(b"\x08\x07\x12\x04onnx" + bytes(64))
    with pytest.raises(ModelFileError, match=r"model\.tflite: not a TFLite model"):
        read_standard_metadata(onnx_like)


def test_min_parser_version_is_the_newest_feature_written():
    assert min_parser_version({"ModelMetadata.name", "AssociatedFileType.TENSOR_AXIS_LABELS"}) == "1.0.0"
    assert (
        min_parser_version({"ModelMetadata.name", "AssociatedFile.version", "AssociatedFileType.VOCABULARY"}) == "1.4.1"
    )
