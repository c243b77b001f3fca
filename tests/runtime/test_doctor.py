"""`edgetl doctor`: what runs here, and why the rest does not."""

from click.testing import CliRunner

from edgetl.cli import main
from edgetl.runtime import doctor


def by_name(checks):
    return {check.name: check for check in checks}


def test_this_machine_has_litert_and_onnxruntime():
    checks = by_name(doctor.check_runtimes())
    assert checks["litert"].usable and checks["litert"].version
    assert checks["onnxruntime"].usable and "CPUExecutionProvider" in checks["onnxruntime"].detail
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0
    assert "[ok] litert" in result.output and "[ok] onnxruntime" in result.output


def test_missing_litert_on_32_bit_arm_says_why_and_what_instead(monkeypatch):
    monkeypatch.setattr(doctor.platform, "machine", lambda: "armv7l")
    real = doctor.installed_version
    monkeypatch.setattr(doctor, "installed_version", lambda d: None if d == "ai-edge-litert" else real(d))
    check = by_name(doctor.check_runtimes())["litert"]
    assert not check.usable
    assert "32-bit ARM (armv7l)" in check.detail and "aarch64" in check.fix


def test_tflite_runtime_under_numpy_2_is_explained(monkeypatch):
    real = doctor.installed_version
    monkeypatch.setattr(doctor, "installed_version", lambda d: "2.14.0" if d == "tflite-runtime" else real(d))

    def failing_import(name):
        raise ImportError("numpy.core.multiarray failed to import")

    monkeypatch.setattr(doctor, "import_interpreter", failing_import)
    check = by_name(doctor.check_runtimes())["tflite-runtime"]
    assert not check.usable
    assert "built for NumPy 1" in check.detail and "ai-edge-litert" in check.fix


def test_doctor_fails_when_nothing_runs_onnx(monkeypatch):
    real = doctor.installed_version
    monkeypatch.setattr(doctor, "installed_version", lambda d: None if d.startswith("onnxruntime") else real(d))
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert "nothing here can run .onnx files" in result.output
    assert 'fix: pip install "edgetl[device]"' in result.output
