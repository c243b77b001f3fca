"""An int8 ONNX file gives in any onnxruntime session, opened with default options, what edgetl verified: float
islands stay float at every optimisation level, min-max calibration counts every image, and the portable target
gives the same results on x86-64 without VNNI (emulated with qemu-x86_64) as here."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgetl.exporting.onnx import node_of, quantize_onnx_int8
from edgetl.models.classifier import INPUT_NAME
from tests.exporting.onnx_models import pixels, small_classifier

LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


def run(model_proto, images: np.ndarray, level: str = "ORT_ENABLE_ALL", disabled: list[str] | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, level)
    extra = {"disabled_optimizers": disabled} if disabled else {}
    session = onnxruntime.InferenceSession(
        model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"], **extra
    )
    return session.run(None, {INPUT_NAME: images})[0]


@pytest.fixture(scope="module")
def calibration():
    return pixels(40)


@pytest.mark.parametrize("layer", ["pw", "fc"])
def test_float_islands_stay_float_at_every_optimisation_level(calibration, layer):
    model = quantize_onnx_int8(small_classifier(), calibration, "minmax", (layer,))
    images = pixels(16, seed=5)
    for level in LEVELS:
        default = run(model, images, level)
        # What the file computes with its island in float: the optimiser that would quantise it turned off.
        island_float = run(model, images, level, disabled=["WeightBiasQuantization"])
        np.testing.assert_array_equal(default, island_float, err_msg=level)


def test_without_its_own_dequantize_an_island_is_quantised_by_default(calibration, monkeypatch):
    """What the island's DequantizeLinear prevents: the same graph without it changes in a default session."""
    import edgetl.exporting.onnx as onnx_export

    monkeypatch.setattr(onnx_export, "keep_islands_float", lambda model, nodes: None)
    model = quantize_onnx_int8(small_classifier(), calibration, "minmax", ("pw",))
    images = pixels(16, seed=5)
    assert not np.array_equal(run(model, images), run(model, images, disabled=["WeightBiasQuantization"]))


def test_float_layer_names_are_the_nodes_they_keep(calibration):
    model = quantize_onnx_int8(small_classifier(), calibration, "minmax", ("pw;pw_w",))
    node = next(n for n in model.graph.node if n.name == node_of("pw;pw_w"))
    weights = {init.name: init for init in model.graph.initializer}
    assert node.input[1] in weights and weights[node.input[1]].data_type == 1  # float32 weights, as in Keras


def _input_scale(model) -> float:
    from onnx import numpy_helper

    quantize = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in (INPUT_NAME, "nchw"))
    scale = next(init for init in model.graph.initializer if init.name == quantize.input[1])
    return float(numpy_helper.to_array(scale))


def test_minmax_calibration_counts_every_image():
    """onnxruntime's min-max calibrator, held to chunks of images, dropped every full chunk; edgetl's ranges come
    from every image, and a sample that is a multiple of the chunk calibrates too."""
    images = pixels(40) * 0.5  # pixels 0-127
    bright = images.copy()
    bright[0] = 255.0  # one image at the top of the range, first, where a dropped chunk would lose it
    dim_scale = _input_scale(quantize_onnx_int8(small_classifier(), images, "minmax"))
    bright_scale = _input_scale(quantize_onnx_int8(small_classifier(), bright, "minmax"))
    assert bright_scale == pytest.approx(255.0 / 255, rel=1e-3) and dim_scale < 0.55
    quantize_onnx_int8(small_classifier(), pixels(64), "minmax")  # a multiple of 32: no "No data is collected"


def _weights_by_node(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    found = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm") and node.input[1] in producers:
            dequantize = producers[node.input[1]]
            found[node.name] = numpy_helper.to_array(initializers[dequantize.input[0]]).astype(int)
    return found


def test_portable_target_keeps_weights_that_cannot_saturate(calibration):
    portable = _weights_by_node(quantize_onnx_int8(small_classifier(), calibration, "minmax", target="portable"))
    full = _weights_by_node(quantize_onnx_int8(small_classifier(), calibration, "minmax", target="vnni-arm64"))

    def largest_pair(weights: np.ndarray) -> int:
        magnitudes = np.sort(np.abs(weights).reshape(len(weights), -1), axis=1)
        return int((magnitudes[:, -1] + magnitudes[:, -2]).max())

    for name in ("stem", "pw"):
        # No two weights of a channel add up to more than 128: 255 x 128 fits the 16-bit pair sums.
        assert largest_pair(portable[name]) <= 128 < largest_pair(full[name]), name
    assert np.abs(portable["dw"]).max() == 127  # depthwise kernels add in 32 bits everywhere


EMULATED_CPU = "Haswell"  # x86-64 with AVX2 and no VNNI, as qemu's TCG emulates it


def _emulation_unavailable() -> str | None:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "x86-64 emulation is only checked on x86-64 hosts"
    if shutil.which("qemu-x86_64-static") is None and shutil.which("qemu-x86_64") is None:
        return "qemu-user is not installed (apt-get install qemu-user-static)"
    return None


def _run_emulated(model_path, images_path, out_path) -> None:
    qemu = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
    code = textwrap.dedent(
        f"""
        import numpy as np, onnxruntime
        session = onnxruntime.InferenceSession({str(model_path)!r})
        np.save({str(out_path)!r}, session.run(None, {{{INPUT_NAME!r}: np.load({str(images_path)!r})}})[0])
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([qemu, "-cpu", EMULATED_CPU, sys.executable, "-c", code], check=True, env=env, timeout=600)


@pytest.mark.slow
def test_portable_file_gives_the_same_results_on_x86_without_vnni(calibration, tmp_path):
    reason = _emulation_unavailable()
    if reason:
        pytest.skip(reason)
    images = pixels(32, seed=7)
    np.save(tmp_path / "images.npy", images)
    outputs = {}
    for target in ("portable", "vnni-arm64"):
        model = quantize_onnx_int8(small_classifier(), calibration, "minmax", target=target)
        path = tmp_path / f"{target}.onnx"
        path.write_bytes(model.SerializeToString())
        _run_emulated(path, tmp_path / "images.npy", tmp_path / f"{target}.npy")
        outputs[target] = (run(model, images), np.load(tmp_path / f"{target}.npy"))
    here, there = outputs["portable"]
    np.testing.assert_allclose(here, there, atol=1e-6)
    # The full-range file is what saturates there: the emulation does tell the two CPU classes apart.
    here, there = outputs["vnni-arm64"]
    assert np.abs(here - there).max() > 0.01
