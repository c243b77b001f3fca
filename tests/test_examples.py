"""examples/: each script runs as written, on tiny data and small settings, and says what it did."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.slow


def test_flowers_trains_exports_and_classifies(make_digits, tmp_path, capsys):
    data = make_digits(6)
    flowers = runpy.run_path(str(EXAMPLES / "flowers.py"), run_name="flowers")
    # No ImageNet weights here, so no fine-tuning stage; and no augmentation, to keep the one epoch short.
    small = ["image_size=32", "alpha=0.35", "epochs=1", "weights=none", "fine_tune_epochs=0", "augment=False"]
    # A one-epoch model is nearly uniform: int8 gets no gate, so the first recipe is kept.
    flowers["main"]([str(data), "--out", str(tmp_path), "--min-agreement", "0", "--set", *small])
    printed = capsys.readouterr().out.splitlines()
    lines = printed[next(i for i, line in enumerate(printed) if line.startswith("trained on")) :]  # after Keras'
    assert lines[0].startswith("trained on 10 classes: test accuracy ")
    assert [line.split(":")[0] for line in lines[1:3]] == ["exports/model_float32.tflite", "exports/model_int8.tflite"]
    assert (tmp_path / "run" / "exports" / "model_int8.tflite").is_file()
    classified = lines[-5:]
    classes = sorted(folder.name for folder in data.iterdir())
    for line, folder in zip(classified, classes[:5], strict=True):
        path, answer = line.split(": ")
        assert Path(path).parent == data / folder and answer.split(" (")[0] in classes
