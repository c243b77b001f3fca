"""Speed ratios of the formats on the sample model, measured in one run on this machine.

Trains MobileNetV2 (alpha 0.35, 48 px, from scratch) on the built-in digits, exports TFLite float32, TFLite int8
and ONNX, benches them all with `edgetl bench`'s own code at one thread count, and prints:
int8 TFLite p50 / Keras tf.function p50, int8 / float TFLite p50, ONNX / float TFLite p50, and the harness
overhead as a share of the fastest p50 (which must stay under 5%).

    PYTHONPATH=src python benchmarks/bench_ratios.py [--epochs 15] [--runs 300] [--threads 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    args = parser.parse_args()

    from edgetl.benchmark.bench import bench_run
    from edgetl.benchmark.report import format_table
    from edgetl.benchmark.settings import BenchSettings
    from edgetl.config import TrainConfig
    from edgetl.data.sample import write_sample_data
    from edgetl.exporting.exporter import export_run
    from edgetl.training.fit import train

    work = args.out or Path(tempfile.mkdtemp(prefix="edgetl-ratios-"))
    data, run = work / "digits", work / "run"
    if not (run / "exports.json").is_file():
        write_sample_data(data)
        config = TrainConfig.from_options(
            str(data), backbone="mobilenetv2", alpha=0.35, image_size=48, weights="none", epochs=args.epochs
        )
        train(config, run, verbose=False)
        export_run(run, ["tflite-float32", "tflite-int8", "onnx"])
    report = bench_run(run, BenchSettings(runs=args.runs, warmup=args.warmup), [args.threads])
    print(format_table(report))
    p50 = {row.format: row.latency.p50 for row in report.rows}
    fastest = min(p50.values())
    overhead_share = 100.0 * report.harness_overhead_ms / fastest
    print()
    print(f"int8 TFLite p50 / Keras tf.function p50 : {p50['tflite-int8'] / p50['keras']:.4f}")
    print(f"int8 TFLite p50 / float32 TFLite p50    : {p50['tflite-int8'] / p50['tflite-float32']:.4f}")
    print(f"ONNX p50 / float32 TFLite p50           : {p50['onnx'] / p50['tflite-float32']:.4f}")
    print(
        f"harness overhead: {report.harness_overhead_ms * 1000:.3f} us per call = {overhead_share:.3f}% of the "
        f"fastest p50 ({fastest:.4f} ms)"
    )
    if overhead_share >= 5.0:
        print("FAILED: the harness overhead is 5% or more of the fastest model's latency", file=sys.stderr)
        return 1
    print("ok: harness overhead < 5% of the fastest p50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
