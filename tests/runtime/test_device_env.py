"""`pip install "edgetl[device]"` and nothing else: classify must work in such an environment.

The environment is built offline from the packages already installed here: a fresh venv that links in only the
distributions the `device` extra requires (and what those require, recursively), plus this checkout's source.
TensorFlow is not among them, so the test proves classify runs where TensorFlow does not exist at all.
"""

import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution, requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement

SRC = Path(__file__).resolve().parents[2] / "src"


def device_closure() -> dict[str, object]:
    """Installed distributions the device extra pulls in, by normalised name."""
    wanted = [
        Requirement(text)
        for text in requires("edgetl") or []
        if Requirement(text).marker is None or Requirement(text).marker.evaluate({"extra": "device"})
    ]
    found: dict[str, object] = {}
    while wanted:
        requirement = wanted.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in found:
            continue
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            continue
        found[name] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                wanted.append(sub)
    return found


def build_device_env(root: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next((root / "lib").glob("python*/site-packages"))
    for dist in device_closure().values():
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    (site / "edgetl-checkout.pth").write_text(str(SRC) + "\n")
    return root / "bin" / "python"


@pytest.mark.slow
def test_classify_in_an_environment_with_only_the_device_extra(exported_run, sample_dir, tmp_path):
    closure = device_closure()
    assert {"numpy", "pillow", "ai-edge-litert", "onnxruntime", "click"} <= set(closure)
    assert not {"tensorflow", "keras", "tf2onnx", "onnx"} & set(closure)
    python = build_device_env(tmp_path / "device-env")
    no_tf = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True, text=True)
    assert no_tf.returncode != 0 and "No module named 'tensorflow'" in no_tf.stderr

    image = sorted((sample_dir / "seven").iterdir())[0]
    for filename in ("model_int8.tflite", "model.onnx"):
        result = subprocess.run(
            [str(python), "-m", "edgetl", "classify", str(exported_run / "exports" / filename), str(image), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        line = json.loads(result.stdout)
        assert line["file"] == str(image) and len(line["top"]) == 3
    doctor = subprocess.run([str(python), "-m", "edgetl", "doctor"], capture_output=True, text=True, timeout=60)
    assert doctor.returncode == 0, doctor.stderr
    assert "[--] tensorflow      not installed" in doctor.stdout
