"""The device path must never import TensorFlow: prove it in fresh processes, as click's test_imports does."""

import json

import pytest

from tests.helpers import BLOCKER, HEAVY, run_python


def test_runtime_and_cli_import_nothing_heavy():
    result = run_python(
        """
        import json, sys
        import edgetl.cli, edgetl.runtime.classify, edgetl.runtime.engine
        from edgetl import Classifier
        import edgetl.runtime.litert, edgetl.runtime.onnxrt, edgetl.runtime.metadata, edgetl.runtime.image
        import edgetl.runtime.tflite_metadata
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)))
        """.replace("HEAVY", repr(HEAVY))
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


@pytest.mark.slow
@pytest.mark.parametrize("filename", ["model_int8.tflite", "model.onnx"])
def test_classify_runs_where_tensorflow_cannot_be_imported(exported_run, sample_dir, filename):
    image = sorted((sample_dir / "five").iterdir())[0]
    model = exported_run / "exports" / filename
    result = run_python(
        BLOCKER
        + f"""
import sys
from edgetl.cli import main
sys.argv = ["edgetl", "classify", {str(model)!r}, {str(image)!r}, "--json"]
try:
    main()
finally:
    assert not any(m.split(".")[0] in {HEAVY!r} for m in sys.modules)
"""
    )
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)
    assert line["file"] == str(image)
    labels = (exported_run / "labels.txt").read_text().split()
    assert line["top"][0]["label"] in labels
