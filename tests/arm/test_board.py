"""edgetl's device path on aarch64: an emulated board (qemu-user + a Debian arm64 root, see board.py).

Runs where the machine allows it (root, binfmt_misc) and `make test` has prepared the board; skipped, with the
reason, elsewhere. Latencies measured here are emulated, not a board's.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.arm import board as arm

pytestmark = [pytest.mark.slow, pytest.mark.arm]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    started = arm.start_or_skip(tmp_path_factory.mktemp("board"))
    yield started
    started.stop()
    assert not any(mount.is_mount() for mount in (started.root / "proc", started.root / "sys", started.root / "dev"))


@pytest.fixture(scope="module")
def on_board(board, exported_run, sample_dir):
    """The exported files and 30 test images copied into the board's /tmp; returns (host paths, board paths)."""
    workdir = board.root / "tmp" / "edgetl-test"
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "images").mkdir(parents=True)
    for model in (exported_run / "exports").iterdir():
        if model.is_file():
            shutil.copy(model, workdir / model.name)
    images = sorted(sample_dir.rglob("*.png"))[::3]
    board_images = []
    for image in images:
        # Class subfolders, so the device-side bench reads the labels from them.
        (workdir / "images" / image.parent.name).mkdir(exist_ok=True)
        shutil.copy(image, workdir / "images" / image.parent.name / image.name)
        board_images.append(f"/tmp/edgetl-test/images/{image.parent.name}/{image.name}")
    yield images, board_images
    shutil.rmtree(workdir, ignore_errors=True)


def test_the_board_is_aarch64_without_tensorflow(board):
    probe = "import platform, importlib.util as u; print(platform.machine(), u.find_spec('tensorflow'))"
    result = board.python("-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["aarch64", "None"]


@pytest.mark.parametrize("filename", ["model_int8.tflite", "model_float32.tflite", "model.onnx"])
def test_classify_on_the_board_agrees_with_the_host(board, on_board, exported_run, filename):
    from edgetl.runtime.engine import open_engine
    from edgetl.runtime.image import load_images

    host_images, board_images = on_board
    engine = open_engine(exported_run / "exports" / filename)
    pixels, _, _ = load_images(host_images, engine.input_size)
    host = engine.predict(pixels)

    result = board.python(
        "-m",
        "edgetl",
        "classify",
        f"/tmp/edgetl-test/{filename}",
        *board_images,
        "--json",
        "--top-k",
        str(len(engine.labels)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["file"] for row in rows] == board_images
    on_arm = np.zeros_like(host)
    for i, row in enumerate(rows):
        for entry in row["top"]:
            on_arm[i, engine.labels.index(entry["label"])] = entry["score"]
    agreement = float(np.mean(on_arm.argmax(axis=1) == host.argmax(axis=1)))
    print(f"{filename}: top-1 agreement host/board {agreement:.3f}, max |p diff| {np.abs(on_arm - host).max():.2e}")
    # Float kernels differ between x86 and ARM in the last bits, int8 requantisation by one step at most.
    tolerance = 1e-4 if "int8" not in filename else 2 / 256
    np.testing.assert_allclose(on_arm, host, atol=tolerance)
    ordered = np.sort(host, axis=1)
    clear = ordered[:, -1] - ordered[:, -2] > 2 * tolerance  # a near-tie may go either way on other hardware
    assert (on_arm.argmax(axis=1)[clear] == host.argmax(axis=1)[clear]).all()


def test_device_bench_runs_on_the_board(board, on_board):
    """The TensorFlow-free bench, run by the board itself; its rows say aarch64 and emulated."""
    result = board.python(
        "-m", "edgetl", "bench", "/tmp/edgetl-test/model_int8.tflite", "/tmp/edgetl-test/model.onnx",
        "--images", "/tmp/edgetl-test/images", "--runs", "5", "--warmup", "1", "--batch", "4",
        "--json", "/tmp/edgetl-test/bench.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((board.root / "tmp" / "edgetl-test" / "bench.json").read_text())
    assert {row["format"] for row in rows} == {"tflite-int8", "onnx"}
    for row in rows:
        assert row["device"] == "aarch64" and row["emulated"] is True
        assert row["images"] == len(on_board[0]) and 0.0 <= row["top1"] <= 1.0
        assert row["latency_ms"]["p50"] > 0


def test_bench_remote_from_the_host_lands_in_the_same_table(board, on_board, exported_run, tmp_path):
    """`edgetl bench RUN --remote` over SSH to the board: host rows and aarch64 rows side by side."""
    from click.testing import CliRunner

    from edgetl.cli import main

    out = tmp_path / "bench.json"
    ssh_options = [
        f"Port={board.port}", f"IdentityFile={board.user_key}", f"UserKnownHostsFile={board.known_hosts}",
        "IdentitiesOnly=yes", "StrictHostKeyChecking=yes",
    ]  # fmt: skip
    arguments = ["bench", str(exported_run), "--remote", board.target, "--remote-images", "12", "--runs", "5"]
    arguments += ["--warmup", "1", "--batch", "4", "--json", str(out)]
    for option in ssh_options:
        arguments += ["--ssh-option", option]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    on_arm = [row for row in rows if row["device"] == "aarch64"]
    on_host = [row for row in rows if row["device"] != "aarch64"]
    assert {row["format"] for row in on_arm} >= {"tflite-float32", "tflite-int8", "onnx"}
    assert {row["format"] for row in on_host} >= {"keras", "tflite-int8"}
    assert all(row["emulated"] is True for row in on_arm)
    # Several machines: the table gains a host column, and says which rows ran emulated.
    assert board.target in result.output and "ran under emulation" in result.output
    # The board's copy of each export agrees with Keras as well as the host's does, on the same images.
    for row in on_arm:
        if row["format"] in ("tflite-float32", "onnx"):
            assert row["agreement"] == 1.0 or row["max_probability_diff"] < 1e-4


def test_the_board_is_a_verification_of_the_transfer_runs_int8_files(board, transfer_run, tmp_path):
    """`edgetl bench RUN --remote` on a real transfer run: each board row is compared with this machine's answers
    for the same file, named where they differ, and recorded in exports.json as a place the file was verified,
    with the board's own figures (so a program on the board can read what to expect)."""
    from click.testing import CliRunner

    from edgetl.cli import main

    out = tmp_path / "bench.json"
    arguments = ["bench", str(transfer_run), "--remote", board.target, "--remote-images", "30", "--runs", "3"]
    arguments += ["--warmup", "1", "--batch", "4", "--json", str(out)]
    for option in (
        f"Port={board.port}", f"IdentityFile={board.user_key}", f"UserKnownHostsFile={board.known_hosts}",
        "IdentitiesOnly=yes", "StrictHostKeyChecking=yes",
    ):  # fmt: skip
        arguments += ["--ssh-option", option]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    print(result.output)  # the table with the board's rows and any ≠ lines, for `pytest -s`
    rows = json.loads(out.read_text())
    recorded = {r["format"]: r for r in json.loads((transfer_run / "exports.json").read_text())}
    on_arm = [row for row in rows if row["device"] == "aarch64"]
    assert {row["format"] for row in on_arm} >= {"tflite-int8", "onnx-int8"}
    for row in on_arm:
        (entry,) = [w for w in recorded[row["format"]]["verified_on"] if w.get("host") == board.target]
        assert entry["cpu"] == "arm64" and entry["images"] == 30 and entry["options"] == "default"
        assert entry["agreement"] == pytest.approx(row["agreement"]) and entry["top1"] == pytest.approx(row["top1"])
        assert row["reference_top1"] is not None  # held to Keras on the same 30 images
        named = f"≠ {row['format']} on {board.target}:" in result.output
        assert named == ("differs_from_host" in row), row["format"]
