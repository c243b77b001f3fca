"""Each command that starts TensorFlow, run as a user runs it (a fresh process): nothing on stderr but what
edgetl itself has to say. TensorFlow's C++ start-up lines (oneDNN, cuInit, absl) must not get through."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_together(commands: dict[str, tuple], cwd: Path) -> None:
    """Run each `edgetl` command in a fresh process, all at once; each must succeed with nothing on stderr."""
    # Without TF_CPP_MIN_LOG_LEVEL (tests/conftest.py sets it) and without a terminal: what a fresh shell gives.
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | {"PYTHONPATH": SRC}
    started = {
        name: subprocess.Popen(
            [sys.executable, "-m", "edgetl", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=environment,
        )
        for name, args in commands.items()
    }
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name}: {stderr}"
        assert stdout.strip(), name
        assert stderr == "", f"`edgetl {name}` wrote to stderr:\n{stderr}"


@pytest.fixture(scope="module")
def outside_model(sample_dir, tmp_path_factory):
    """A Keras file from outside edgetl, its labels file and a folder of calibration images per class."""
    from tests.exporting.test_outside_model import small_classifier

    root = tmp_path_factory.mktemp("quiet")
    for name in ("two", "one", "three"):
        shutil.copytree(sample_dir / name, root / "images" / name)
    (root / "labels.txt").write_text("two\none\nthree\n")
    small_classifier(with_lambda=False, size=32).save(root / "notebook.keras")
    return root


def test_every_command_keeps_stderr_quiet(sample_dir, trained_run, outside_model, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("exports", "exports.json"))
    image = sorted((sample_dir / "three").iterdir())[0]
    # Two rounds, each of independent commands side by side: bench and classify need the export.
    run_together(
        {
            "train": (
                "train",
                sample_dir,
                "--out",
                tmp_path / "trained",
                "--weights",
                "none",
                "--alpha",
                0.35,
                "--image-size",
                32,
                "--epochs",
                1,
                "--quiet",
            ),
            "export RUN": ("export", run, "--formats", "tflite-float32"),
            "export MODEL.keras": (
                "export",
                outside_model / "notebook.keras",
                "--labels",
                outside_model / "labels.txt",
                "--calibration",
                outside_model / "images",
                "--out",
                tmp_path / "outside",
                "--formats",
                "tflite-float32",
                "--min-agreement",
                0,
            ),
        },  # fmt: skip
        tmp_path,
    )
    run_together(
        {
            "bench RUN": ("bench", "run", "--runs", 2, "--warmup", 0, "--batch", 2),
            "classify": ("classify", run / "exports" / "model_float32.tflite", image),
        },
        tmp_path,
    )
