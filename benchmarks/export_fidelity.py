"""Export fidelity on the sample data: every format of MobileNetV2 and Xception against its Keras original.

Trains both from scratch on the full built-in digits (no network), exports every format, and prints per format:
top-1 agreement with Keras, top-1 accuracy and its change against Keras, the largest probability difference,
the share of ops in int8 and the size. The int8 TFLite file is made twice, by the TFLite converter and by the
LiteRT quantizer (ai-edge-quantizer), to compare the two paths on the same calibration images.

    PYTHONPATH=src python benchmarks/export_fidelity.py [--out DIR] [--mobilenet-epochs 15] [--xception-epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgetl.config import TrainConfig  # noqa: E402
from edgetl.data.sample import write_sample_data  # noqa: E402
from edgetl.exporting.exporter import FORMATS, ExportOptions, export_source  # noqa: E402
from edgetl.exporting.source import from_run  # noqa: E402
from edgetl.training.fit import train  # noqa: E402

MODELS = {
    "mobilenetv2": {"alpha": 0.35, "image_size": 48},
    "xception": {"alpha": None, "image_size": 71},
}


def measure(name: str, data: Path, out: Path, epochs: int) -> list[tuple]:
    settings = MODELS[name]
    started = time.perf_counter()
    config = TrainConfig.from_options(
        str(data),
        backbone=name,
        alpha=settings["alpha"],
        image_size=settings["image_size"],
        weights="none",
        epochs=epochs,
        patience=epochs,
        batch_size=32,
        seed=42,
    )
    result = train(config, out / name, overwrite=True, verbose=False)
    trained = time.perf_counter() - started
    print(f"{name}: trained {result.epochs_run} epochs in {trained:.0f} s, Keras test top-1 {result.test_accuracy:.4f}")
    source = from_run(out / name)
    rows = []
    runs = [(list(FORMATS), "converter"), (["tflite-int8"], "ai-edge")]
    for formats, quantizer in runs:
        started = time.perf_counter()
        options = ExportOptions(calibration_samples=300, min_agreement=0.0, quantizer=quantizer)
        for record in export_source(source, formats, options):
            label = record.format + (" (ai-edge)" if quantizer == "ai-edge" else "")
            rows.append((name, label, record))
        print(
            f"{name}: exported {len(formats)} format(s) with quantizer {quantizer} in "
            f"{time.perf_counter() - started:.0f} s"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Where to keep the runs (default: a temp folder).")
    parser.add_argument("--mobilenet-epochs", type=int, default=15)
    parser.add_argument("--xception-epochs", type=int, default=3)
    parser.add_argument("--models", default="mobilenetv2,xception")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgetl-fidelity-"))
    data = out / "digits"
    if not data.exists():
        write_sample_data(data)
    epochs = {"mobilenetv2": args.mobilenet_epochs, "xception": args.xception_epochs}
    rows = []
    for name in args.models.split(","):
        rows += measure(name, data, out, epochs[name])
    print()
    print(
        f"{'model':<12}{'format':<22}{'images':>7}{'agree':>8}{'top-1':>8}{'keras':>8}{'d top-1':>9}"
        f"{'max dp':>8}{'int8 ops':>9}  {'in/out':<16}{'size KB':>10}"
    )
    for name, label, r in rows:
        share = "-" if r.int8_op_share is None else f"{r.int8_op_share:.0%}"
        print(
            f"{name:<12}{label:<22}{r.images:>7}{r.agreement:>8.4f}{r.top1:>8.4f}{r.keras_top1:>8.4f}"
            f"{(r.top1 - r.keras_top1) * 100:>+8.2f}p{r.max_probability_diff:>8.4f}{share:>9}"
            f"  {r.input_dtype + '/' + r.output_dtype:<16}{r.size_bytes / 1024:>10.0f}"
        )
    print(f"\nruns kept in {out}")


if __name__ == "__main__":
    main()
