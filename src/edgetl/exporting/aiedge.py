"""int8 TFLite through the LiteRT quantizer (ai-edge-quantizer), which LiteRT's documentation names as the
successor of the converter's post-training quantisation.

It quantises an already converted float32 .tflite file with a recipe (here `static_wi8_ai8`: int8 per-channel
weights, int8 activations calibrated on the same training images). Its input and output come out int8 (the
input scale ~1, zero point -128, as with the converter), so it is offered with `--io-type int8` only.

Neither path agrees with Keras better on the sample models (docs/benchmarks.md, measured by
benchmarks/export_fidelity.py), so the converter stays the default (no extra dependency, and uint8/float32 I/O);
this one is a choice, `--quantizer ai-edge`.
"""

from __future__ import annotations

import numpy as np

from edgetl.errors import MissingExtraError


def quantize_int8_ai_edge(model, calibration_pixels: np.ndarray) -> bytes:
    """The int8 .tflite bytes, int8 input and output (QUANTIZERS["ai-edge"]; export's option checks refuse others)."""
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise MissingExtraError("ai-edge-quantizer", "aiedge", "--quantizer ai-edge") from None
    from ai_edge_litert.interpreter import Interpreter

    from edgetl.exporting.tflite import convert_float32

    float_model = convert_float32(model)
    signatures = Interpreter(model_content=float_model).get_signature_list()
    signature_key, signature = next(iter(signatures.items()))
    (input_name,) = signature["inputs"]
    engine = quantizer.Quantizer(float_model, recipe.static_wi8_ai8())
    samples = [{input_name: image[np.newaxis].astype(np.float32)} for image in calibration_pixels]
    calibration = engine.calibrate({signature_key: samples})
    result = engine.quantize(calibration, enable_progress_report=False)
    return bytes(result.quantized_model)
