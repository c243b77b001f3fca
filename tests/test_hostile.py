"""Hostile input (issue 15): every file a user or a board can hand edgetl gets a clear one-line answer, bounded
memory, and the other files go on. The files are made here, small on disk (the bomb PNG is a header)."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import struct
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgetl.cli import main
from edgetl.errors import DataError, ModelFileError
from edgetl.runtime import image as image_module
from edgetl.runtime.image import load_image
from edgetl.runtime.metadata import MAX_METADATA_BYTES, METADATA_KEY, ModelMetadata, read_tflite_metadata
from tests.runtime.tiny_models import metadata, onnx_with, tflite_flatbuffer, tflite_with

pytest.importorskip("ai_edge_litert")


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none: a decompression bomb as Pillow first sees it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture(autouse=True)
def default_pixel_budget(monkeypatch):
    """`edgetl --max-megapixels` changes the process's budget; every test here starts from the default."""
    monkeypatch.setattr(image_module, "_max_pixels", int(image_module.MAX_MEGAPIXELS * 1_000_000))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "model.tflite"
    path.write_bytes(tflite_with(metadata().to_json()))
    return path


@pytest.fixture
def red(tmp_path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (12, 10), (250, 0, 0)).save(path)
    return path


@pytest.fixture
def blue(tmp_path) -> Path:
    path = tmp_path / "blue.png"
    Image.new("RGB", (10, 12), (0, 0, 250)).save(path)
    return path


def classify(*args, timeout: float = 60):
    """`edgetl classify ...` in-process, failing (not hanging) if it does not finish."""
    outcome = {}

    def invoke():
        outcome["result"] = CliRunner().invoke(main, [str(a) for a in args])

    worker = threading.Thread(target=invoke, daemon=True)
    worker.start()
    worker.join(timeout)
    assert "result" in outcome, f"edgetl {' '.join(map(str, args))} did not finish in {timeout} s"
    return outcome["result"]


def one_line_error(result, *fragments: str) -> str:
    """The command failed with exactly one `Error:` line holding every fragment, and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def by_file(result) -> dict[str, dict]:
    return {entry["file"]: entry for entry in map(json.loads, result.stdout.splitlines())}


# Images ----------------------------------------------------------------------------------------------------------


def test_decompression_bomb_is_that_files_error_and_the_batch_goes_on(model, red, blue, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(30000, 30000))
    assert bomb.stat().st_size < 100
    result = classify("classify", model, red, bomb, blue, "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    entries = by_file(result)
    assert [entries[str(p)].get("label") for p in (red, blue)] == ["red", "blue"]
    # Pillow's own guard answers first for an image this large; a smaller bomb meets edgetl's budget.
    assert entries[str(bomb)]["error"] == (
        f"{bomb}: declares more than 179 megapixels, over the limit of 40 megapixels per image "
        f"(a decompression bomb?); raise it with edgetl --max-megapixels N"
    )
    bomb.write_bytes(png_header(13000, 13000))
    assert by_file(classify("classify", model, bomb, "--json"))[str(bomb)]["error"] == (
        f"{bomb}: 13000x13000 pixels is over the limit of 40 megapixels per image; "
        f"raise it with edgetl --max-megapixels N"
    )


def test_max_megapixels_flag_moves_the_budget(model, red):
    refused = classify("--max-megapixels", 0.0001, "classify", model, red, "--json")
    assert "12x10 pixels is over the limit of 0.0001 megapixels" in by_file(refused)[str(red)]["error"]
    image_module.set_max_megapixels(1000)
    assert Image.MAX_IMAGE_PIXELS >= 1_000_000_000  # Pillow's own guard no longer refuses first


def test_pillows_own_bomb_guard_becomes_a_per_file_error(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(300, 300))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataError, match="bomb.png: declares more than 0 megapixels, over the limit of 1000 megapixels"):
        load_image(bomb, (8, 8), max_pixels=10**9)


def test_large_jpeg_decodes_reduced_within_the_budget(tmp_path):
    """A JPEG is decoded at 1/8 scale for a small model input, so a photo over the budget in full still loads;
    a PNG of the same size, which decodes whole, is refused."""
    gradient = np.linspace(0, 255, 1600 * 1200 * 3).reshape(1200, 1600, 3).astype(np.uint8)
    photo, scan = tmp_path / "photo.jpg", tmp_path / "scan.png"
    Image.fromarray(gradient).save(photo, quality=90)
    Image.fromarray(gradient).save(scan, compress_level=1)
    budget = 100_000  # 1600x1200 is 1.9 megapixels; 1/8 of it is 200x150 = 30,000
    pixels = load_image(photo, (16, 16), max_pixels=budget)
    full = load_image(photo, (16, 16))
    assert pixels.shape == (16, 16, 3) and np.abs(pixels.astype(int) - full.astype(int)).max() <= 3
    with pytest.raises(DataError, match="1600x1200 pixels is over the limit"):
        load_image(scan, (16, 16), max_pixels=budget)


def test_fifo_named_directly_does_not_hang(model, red, tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    result = classify("classify", model, fifo, red, "--json", timeout=30)
    entries = by_file(result)
    assert result.exit_code == 1
    assert entries[str(fifo)]["error"] == f"{fifo}: is a FIFO (named pipe), not an image file"
    assert entries[str(red)]["label"] == "red"
    with pytest.raises(DataError, match="is a device, not an image file"):
        load_image("/dev/zero", (8, 8))


def test_unreadable_paths_are_reported_not_skipped(model, red, tmp_path, monkeypatch):
    """Simulated with the OS calls failing as they do for a user without access (the tests may run as root)."""
    locked_parent = tmp_path / "locked" / "in.png"
    album = tmp_path / "album"
    (album / "private").mkdir(parents=True)
    Image.new("RGB", (8, 8), (0, 250, 0)).save(album / "green.png")
    real_stat, real_scandir, real_open = Path.stat, os.scandir, os.open

    def stat(self, *args, **kwargs):
        if self == locked_parent:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    def scandir(path="."):
        if Path(path) == album / "private":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def open_(path, *args, **kwargs):
        if Path(path) == red:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    monkeypatch.setattr(os, "scandir", scandir)
    result = classify("classify", model, locked_parent, album, "--json")
    entries = by_file(result)
    assert result.exit_code == 1
    assert entries[str(locked_parent)]["error"] == f"{locked_parent}: cannot be looked at (Permission denied)"
    assert entries[str(album / "private")]["error"] == (
        f"{album / 'private'}: folder cannot be listed (Permission denied); its images were not read"
    )
    assert entries[str(album / "green.png")]["label"] == "green"
    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(DataError, match="red.png: permission denied"):
        load_image(red, (8, 8))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads every file")
def test_unreadable_paths_for_real(model, red, tmp_path):
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(locked / "inner" / "in.png")
    (locked / "inner").chmod(0)
    try:
        result = classify("classify", model, locked / "inner" / "in.png", locked, red, "--json")
    finally:
        (locked / "inner").chmod(0o755)
    entries = by_file(result)
    assert result.exit_code == 1 and entries[str(red)]["label"] == "red"
    assert "permission denied" in entries[str(locked / "inner" / "in.png")]["error"].lower()
    assert "folder cannot be listed" in entries[str(locked / "inner")]["error"]


def test_csv_quotes_a_file_name_with_a_line_break(model, tmp_path):
    odd = tmp_path / 'two\nlines, "quoted".png'
    Image.new("RGB", (8, 8), (0, 0, 250)).save(odd, format="PNG")
    result = classify("classify", model, odd, "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 1 and rows[0]["file"] == str(odd) and rows[0]["label"] == "blue"


def test_watch_and_train_skip_a_bomb_frame(model, red, tmp_path):
    from edgetl.data.folder import Example
    from edgetl.data.pipeline import decode_subset
    from edgetl.runtime.classify import classify_stream
    from edgetl.runtime.engine import open_engine

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(12000, 12000))
    # --watch classifies each arrival as a batch of one through the same stream.
    results = list(classify_stream(open_engine(model), iter([bomb, red]), batch_size=1))
    assert "over the limit" in results[0].error and results[1].label == "red"
    subset = decode_subset([Example(bomb, 0), Example(red, 1)], 8)
    assert subset.labels.tolist() == [1] and "bomb.png: 12000x12000 pixels" in str(subset.skipped[0])


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on corrupt TIFF tags
def test_fuzzed_image_files_decode_or_fail_cleanly(tmp_path):
    rng = random.Random(15)
    pixels = np.random.default_rng(15).integers(0, 255, (12, 10, 3), dtype=np.uint8)
    seeds = []
    for extension, convert in ((".png", "RGBA"), (".jpg", "RGB"), (".gif", "P"), (".bmp", "RGB"), (".tif", "RGB")):
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(convert).save(buffer, format=Image.registered_extensions()[extension])
        seeds.append((extension, buffer.getvalue()))
    outcomes = {"decoded": 0, "refused": 0}
    for attempt in range(400):
        extension, data = rng.choice(seeds)
        data = bytearray(data[: rng.randrange(8, len(data))] if rng.random() < 0.3 else data)
        for _ in range(rng.randint(0, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"fuzz{attempt}{extension}"
        path.write_bytes(bytes(data))
        try:
            assert load_image(path, (8, 8)).shape == (8, 8, 3)
            outcomes["decoded"] += 1
        except DataError as error:
            assert str(error).startswith(str(path)) and "\n" not in str(error)
            outcomes["refused"] += 1
    assert min(outcomes.values()) > 20, outcomes


# Model files -----------------------------------------------------------------------------------------------------


def hostile_metadata(**changes) -> str:
    raw = json.loads(metadata().to_json())
    raw.update(changes)
    return json.dumps(raw)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (hostile_metadata(labels=7), ["field 'labels' is 7; expected a list of one or more class names"]),
        (hostile_metadata(labels="red green blue"), ["field 'labels' is \"red green blue\""]),
        (hostile_metadata(labels=["red", "two\nlines", "blue"]), ["field 'labels'"]),
        (hostile_metadata(input_size=[-8, 8]), ["field 'input_size' is [-8, 8]; expected [height, width]"]),
        (hostile_metadata(input_size=[0, 8]), ["field 'input_size' is [0, 8]"]),
        (hostile_metadata(input_size="8x8"), ["field 'input_size' is \"8x8\""]),
        (hostile_metadata(input_size=[100000, 100000]), ["field 'input_size' is [100000, 100000]", "1 to 4096"]),
        (hostile_metadata(resize="lanczos"), ["field 'resize' is \"lanczos\"; expected one of bilinear, nearest"]),
        (hostile_metadata(normalization={"mode": "raw", "std": [0, 1, 1]}), ["field 'normalization.std'"]),
        (hostile_metadata(normalization=None), ["field 'normalization' is null"]),
        (hostile_metadata(pixel_range=[255, 0]), ["field 'pixel_range'"]),
        (json.dumps({"input_size": [8, 8]}), ["lacks the field 'labels'"]),
        ("[" * 100_000 + "]" * 100_000, ["JSON nested too deeply"]),
        ("[1, 2]", ["a JSON list, not an object"]),
        ("{'labels': 1}", ["not JSON"]),
        (b'{"labels": ["caf\xe9"]}', ["not UTF-8 text"]),
    ],
)
def test_hostile_metadata_is_one_line_naming_the_file_and_field(model, red, text, fragments):
    model.write_bytes(tflite_with(text))
    line = one_line_error(classify("classify", model, red), f"Error: {model}: ", *fragments)
    assert len(line) < 300
    with pytest.raises(ModelFileError):
        ModelMetadata.from_json(text, "x")


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
@pytest.mark.parametrize(("labels", "said"), [(["red", "green"], "2 labels"), (["a", "b", "c", "d"], "4 labels")])
def test_labels_must_match_the_outputs(tmp_path, red, suffix, labels, said):
    path = tmp_path / f"model{suffix}"
    text = metadata(labels).to_json()
    path.write_bytes(tflite_with(text) if suffix == ".tflite" else onnx_with(text))
    one_line_error(classify("classify", path, red), f"{said} but the model has 3 outputs")


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_input_size_must_match_the_model(tmp_path, red, suffix):
    path = tmp_path / f"model{suffix}"
    text = metadata(size=16).to_json()
    path.write_bytes(tflite_with(text) if suffix == ".tflite" else onnx_with(text))
    one_line_error(classify("classify", path, red), "input_size [16, 16] but the model takes 8x8 images")


def test_onnx_with_undecodable_metadata(tmp_path, red):
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_with('{"labels": ' * 50_000))
    one_line_error(classify("classify", path, red), "edgetl metadata is damaged")


def test_metadata_zip_bomb_is_refused_without_inflating_it(model, red):
    padding = " " * (MAX_METADATA_BYTES + 1)  # deflates to a few kilobytes
    model.write_bytes(tflite_with(hostile_metadata(extra={"pad": padding})))
    assert model.stat().st_size < 50_000
    one_line_error(classify("classify", model, red), "would decompress to more than 4194304 bytes; refused")


def test_metadata_whose_size_field_lies_is_read_no_further(tmp_path):
    """A zip whose header claims a small edgetl.json that inflates without end: reading stops at the cap."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(METADATA_KEY, b" " * (MAX_METADATA_BYTES * 3))
    data = bytearray(archive.getvalue())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size, local and central
        start = data.index(signature)
        data[start + offset : start + offset + 4] = struct.pack("<I", 100)
    path = tmp_path / "liar.tflite"
    path.write_bytes(tflite_flatbuffer() + bytes(data))
    with pytest.raises(ModelFileError, match="liar.tflite: edgetl metadata is damaged"):
        read_tflite_metadata(path)


def test_model_files_that_are_not_models_say_what_is_wrong(model, red, tmp_path):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    one_line_error(classify("classify", empty, red), f"{empty}: is empty (0 bytes)")
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(os.urandom(2000))
    one_line_error(classify("classify", damaged, red), f"{damaged}: not a TFLite model (no TFL3 identifier")
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(model.read_bytes()[:-40])
    one_line_error(classify("classify", cut, red), f"{cut}: its edgetl metadata is damaged (the end of the file")
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(tflite_flatbuffer())
    one_line_error(classify("classify", bare, red), f"{bare}: carries no labels (no metadata); give --labels FILE")
    folder = tmp_path / "folder" / "model.tflite"
    folder.mkdir(parents=True)
    one_line_error(classify("classify", folder, red), f"{folder}: is a folder, not a model file")
    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    one_line_error(classify("classify", fifo, red, timeout=30), f"{fifo}: not a regular file")
    onnx = tmp_path / "cut.onnx"
    onnx.write_bytes(onnx_with(metadata().to_json())[:-30])
    one_line_error(classify("classify", onnx, red), f"{onnx}: not a loadable ONNX model")


def test_fuzzed_model_files_load_or_fail_cleanly(model, tmp_path):
    from edgetl.runtime.engine import open_engine

    rng = random.Random(15)
    original = model.read_bytes()
    zip_start = original.index(b"PK\x03\x04")
    outcomes = {"loaded": 0, "refused": 0}
    for attempt in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):  # the metadata is what a hostile file most easily changes
            data[rng.randrange(zip_start, len(data))] = rng.randrange(256)
        path = tmp_path / f"fuzz{attempt}.tflite"
        path.write_bytes(bytes(data))
        try:
            open_engine(path)
            outcomes["loaded"] += 1
        except ModelFileError as error:
            assert str(error).startswith(str(path)) and "\n" not in str(error)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 20, outcomes


def test_a_cut_short_keras_file_is_not_called_missing(tmp_path):
    from edgetl.run import load_keras_model

    model = tmp_path / "model.keras"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("config.json", "{}" * 1000)
    model.write_bytes(archive.getvalue()[:-60])
    with pytest.raises(ModelFileError, match=r"model.keras: not a loadable Keras model \(the file exists, \d+ bytes"):
        load_keras_model(model)
    model.write_bytes(b"")
    with pytest.raises(ModelFileError, match="model.keras: not a loadable Keras model .the file exists, empty"):
        load_keras_model(model)
    with pytest.raises(ModelFileError, match="is a folder, not a Keras model file"):
        load_keras_model(tmp_path)


# Training data ---------------------------------------------------------------------------------------------------


def write_npz(path: Path, **arrays) -> Path:
    rng = np.random.default_rng(0)
    base = {
        "X_train": rng.random((12, 8, 8, 3), dtype=np.float32),
        "y_train": np.arange(12) % 2,
        "X_test": rng.random((4, 8, 8, 3), dtype=np.float32),
        "y_test": np.arange(4) % 2,
    }
    base.update(arrays)
    np.savez(path, **{key: value for key, value in base.items() if value is not None})
    return path


def read(source: Path):
    from edgetl.data.layouts import LayoutOptions, read_dataset

    return read_dataset(str(source), "auto", LayoutOptions())


def test_one_nan_in_float_images_is_refused_not_trained_on(tmp_path):
    images = np.random.default_rng(1).random((12, 8, 8, 3), dtype=np.float32)
    images[3, 2, 2, 1] = np.nan
    path = write_npz(tmp_path / "data.npz", X_train=images)
    with pytest.raises(DataError) as caught:
        read(path)
    assert str(caught.value) == (
        f"{path}:X_train: 1 NaN or infinite values in 1 image(s) (the first is image 3); "
        f"replace them or drop those images"
    )
    result = CliRunner().invoke(main, ["train", str(path), "--out", str(tmp_path / "run")])
    one_line_error(result, "NaN or infinite values")


def test_train_and_test_floats_share_one_scale(tmp_path):
    unit = np.full((12, 8, 8, 3), 0.5, np.float32)
    dataset = read(write_npz(tmp_path / "unit.npz", X_train=unit, X_test=unit[:4]))
    assert dataset.arrays["test"].images[0][0, 0].tolist() == [128, 128, 128]
    assert dataset.arrays["train"].images[0][0, 0].tolist() == [128, 128, 128]
    wide = unit[:4].copy()
    wide[0, 0, 0] = 200.0  # the test set is 0-255: neither set is multiplied by 255
    dataset = read(write_npz(tmp_path / "wide.npz", X_train=unit, X_test=wide))
    assert dataset.arrays["train"].images[0][0, 0].tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"class_names": np.array("cats")}, "class_names is a single value of type <U4; expected a list of names"),
        ({"class_names": np.array(["a", None], dtype=object)}, "class_names cannot be read (Object arrays"),
        ({"y_train": np.array(["cat", "dog"] * 6)}, "y_train: labels are text ('cat', 'dog', 'cat', ...)"),
        ({"X_train": np.zeros((0, 8, 8, 3), np.float32)}, "X_train: holds no images (shape (0, 8, 8, 3))"),
        ({"X_test": np.zeros((0, 8, 8, 3), np.uint8), "y_test": np.zeros(0)}, "X_test: holds no images"),
        ({"X_train": np.array([["a"] * 8] * 8)}, "X_train: images of type <U1; expected numbers"),
        ({"class_names": np.array(["zero", "zero"])}, "class name(s) 'zero' given more than once"),
        ({"class_names": np.array(["zero", "o\nne"])}, "class name 'o\\nne' cannot be a line of labels.txt"),
    ],
)
def test_malformed_npz_gets_one_message_each(tmp_path, arrays, message):
    path = write_npz(tmp_path / "data.npz", **arrays)
    with pytest.raises(DataError, match=None) as caught:
        read(path)
    assert message in str(caught.value) and str(caught.value).startswith(str(path))


def test_repeated_ids_in_labels_csv_are_kept_once(tmp_path, caplog):
    for name in ("a", "b", "c", "d", "e", "f"):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    rows = ["id,label", "a,cat", "b,cat", "c,cat", "a,dog", "d,dog", "e,dog", "f,dog", "d.png,dog"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level("WARNING"):
        dataset = read(tmp_path)
    examples = [e for name in ("train", "validation", "test") for e in dataset.split.subset(name)]
    assert sorted(e.path.name for e in examples) == ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"]
    assert {e.path.name: dataset.class_names[e.label] for e in examples}["a.png"] == "cat"
    assert "2 repeated id(s) ignored, the first row of each kept: 'a' (dog, kept cat), 'd.png'" in caplog.text


def test_class_folders_that_cannot_be_classes_are_never_dropped_silently(tmp_path, caplog):
    for name in ("cat", "dog", "...", "..x"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "1.png")
        Image.new("RGB", (8, 8)).save(tmp_path / name / "2.png")
        Image.new("RGB", (8, 8)).save(tmp_path / name / "3.png")
    with caplog.at_level("WARNING"):
        assert read(tmp_path).class_names == ["cat", "dog"]
    assert "folder(s) '...', '..x' hold images but are hidden" in caplog.text
    (tmp_path / "two\nlines").mkdir()
    for index in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / "two\nlines" / f"{index}.png")
    with pytest.raises(DataError, match="class name 'two\\\\nlines' cannot be a line of labels.txt"):
        read(tmp_path)


# Concurrency and disks -------------------------------------------------------------------------------------------


def test_concurrent_exports_of_one_run_keep_every_record(tmp_path):
    import subprocess
    import sys
    import textwrap

    index = tmp_path / "exports.json"
    writer = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from edgetl.run import record_export
        for i in range(40):
            record = {"format": f"{sys.argv[2]}-{i}", "path": f"exports/{i}", "size_bytes": 0, "passed": True}
            record_export(Path(sys.argv[1]), {**record, "sha256": "0" * 64})
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen([sys.executable, "-c", writer, str(index), name], env=env) for name in ("tflite", "onnx")
    ]
    assert [process.wait(timeout=120) for process in processes] == [0, 0]
    formats = {record["format"] for record in json.loads(index.read_text())}
    assert formats == {f"{name}-{i}" for name in ("tflite", "onnx") for i in range(40)}


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from edgetl.errors import WriteError
    from edgetl.run import atomic_write

    target = tmp_path / "bench.json"
    target.write_text("old")

    def full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError) as caught:
        atomic_write(target, "new" * 1000)
    assert str(caught.value) == f"{target}: could not be written (no space left: the disk is full); nothing was changed"
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]

    from edgetl.benchmark.result import BenchRow
    from edgetl.benchmark.timing import Latency

    row = BenchRow(
        "onnx",
        "model.onnx",
        1000,
        0.9,
        1.0,
        None,
        None,
        Latency(1.0, 1.2, 1.5, 1.1),
        None,
        1,
        None,
        "onnxruntime",
        "CPU",
        "x86_64",
        10.0,
        None,
        "format",
        10,
    )
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([row.to_dict()]))
    out = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["bench", "compare", str(rows), "--json", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output and not out.exists()
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {out}: could not be written (no space left: the disk is full); nothing was changed"
    )
