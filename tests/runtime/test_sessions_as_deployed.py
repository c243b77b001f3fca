"""edgetl opens every file as any other program does: the runtime's default options. The one setting it passes,
the thread count, changes no output (the runtimes split an op's work between threads, never the sum of one
output), so the figures edgetl records hold for a program that leaves it at its default."""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.runtime.engine import open_engine


@pytest.mark.parametrize("filename", ["model_float32.tflite", "model_int8.tflite", "model.onnx"])
def test_the_thread_count_changes_no_output(exported_run, filename):
    from edgetl.runtime.image import load_images

    images = sorted((exported_run / "data").rglob("*.png"))[:24] or sorted(exported_run.parent.rglob("*.png"))[:24]
    outputs = []
    for threads in (None, 1, 2):
        engine = open_engine(exported_run / "exports" / filename, threads=threads)
        pixels, _, _ = load_images(images, engine.input_size)
        outputs.append(engine.predict(pixels))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


def test_int8_onnx_sessions_have_default_options(tmp_path):
    """The engine's session, the options onnxruntime reports back: nothing but the log level and threads set."""
    import onnxruntime

    from edgetl.exporting.onnx import quantize_onnx_int8
    from edgetl.runtime.onnxrt import session_options
    from tests.exporting.onnx_models import pixels, small_classifier

    model = quantize_onnx_int8(small_classifier(), pixels(24), "minmax", ("pw",))
    path = tmp_path / "model_int8.onnx"
    path.write_bytes(model.SerializeToString())
    plain = onnxruntime.InferenceSession(str(path))
    images = pixels(8, seed=3)
    options = session_options(threads=2)
    assert options.graph_optimization_level == onnxruntime.SessionOptions().graph_optimization_level
    with pytest.raises(RuntimeError, match="does not have configuration"):  # never set, on any CPU
        options.get_session_config_entry("session.x64quantprecision")
    ours = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(ours.run(None, {"pixels": images})[0], plain.run(None, {"pixels": images})[0])
