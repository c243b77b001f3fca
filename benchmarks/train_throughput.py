"""Training throughput of `edgetl train`'s stages, measured in one run at fixed small configurations.

For each image size, real `edgetl train` runs (the library's `train()`: validation, callbacks and per-epoch
checkpoints included), each in a fresh process as a user would start it, on the built-in sample digits: stage 1
(frozen backbone, head only) with `--no-feature-cache` and with the feature cache, 5 epochs each, and a run adding
5 epochs of stage 2 (top 30 backbone layers unfrozen). Every run is repeated, the three in turn, and the median is
shown. MobileNetV2 alpha 0.35, batch 32, CPU. A randomly initialised backbone saved as a local weights file stands in
for ImageNet (no network here): the arithmetic, and so the time, is the same (also with the weights as graph
constants: BatchNorm statistics like trained ones gave the same extraction time). Images/second counts training
images x epochs over the stage's wall time from metrics.json, tracing and (when cached) computing the training
and validation features included.

The target is cached stage 1 at least 5x faster than uncached over 5 epochs. Caching replaces five passes of
the backbone over the data with one, and that one pass is cheaper per image than a training pass: it runs in
large slices, and with the frozen weights as graph constants, which lets Grappler fold BatchNorm into the
convolutions (features.inference_with_constant_weights). Against that stand one-off costs, which weigh most at
small sizes: at 48 px about 0.9 s of a 1.3 s cached stage (tracing the extractor 0.27 s and the head's train and
validation steps 0.30 and 0.11 s; the first call's graph optimisation 0.1 s; the first pass's fresh memory about
0.1 s). The ratio moves from run to run on a shared 2-core machine; more --repeats steady the medians.

    PYTHONPATH=src python benchmarks/train_throughput.py [--image-size 96 ...] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ALPHA = 0.35
BATCH_SIZE = 32
EPOCHS = 5  # per stage; the target is stated for 5
FINE_TUNE_LAYERS = 30
TARGET_RATIO = 5.0
IMAGE_SIZES = (48, 96, 160, 224)
RUNS = ("uncached", "cached", "stage2")


def run_config(name: str, epochs: int) -> tuple[str, dict]:
    """The stage a run times, and its TrainConfig changes."""
    return {
        "uncached": ("stage1", {"feature_cache": False}),
        "cached": ("stage1", {}),
        "stage2": ("stage2", {"fine_tune_epochs": epochs, "fine_tune_layers": FINE_TUNE_LAYERS}),
    }[name]


def train_once(data: str, weights: str, image_size: int, name: str, out: str, epochs: int) -> None:
    """One `edgetl train` run (in this fresh process); prints the timed stage's seconds as JSON."""
    from edgetl.config import TrainConfig
    from edgetl.training.fit import train

    stage, changes = run_config(name, epochs)
    config = TrainConfig.from_options(
        data,
        alpha=ALPHA,
        image_size=image_size,
        weights=weights,
        epochs=epochs,
        batch_size=BATCH_SIZE,
        patience=epochs + 1,  # every epoch runs
        seed=1,
        **changes,
    )
    result = train(config, Path(out), verbose=False)
    assert result.epochs[stage] == epochs, result.epochs
    print(json.dumps({"seconds": result.stage_seconds[stage], "train_images": result.counts["train"]}))


def measure(data: Path, scratch: Path, image_size: int, name: str, repeat: int, epochs: int) -> dict:
    import keras

    from edgetl.models.backbones import get_backbone
    from edgetl.models.classifier import build_backbone

    weights = scratch / f"backbone-{image_size}.weights.h5"
    if not weights.exists():
        keras.utils.set_random_seed(1)
        build_backbone(get_backbone("mobilenetv2"), image_size, ALPHA, "none").save_weights(weights)
    out = scratch / f"{name}-{image_size}-{repeat}"
    command = [sys.executable, __file__, "--child", str(data), str(weights), str(image_size), name, str(out)]
    command += ["--epochs", str(epochs)]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"{name} at {image_size} px failed:\n{finished.stderr[-2000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, action="append", help=f"repeatable (default: {IMAGE_SIZES})")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"per stage (default {EPOCHS})")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        data, weights, image_size, name, out = arguments.child
        train_once(data, weights, int(image_size), name, out, arguments.epochs)
        return
    sizes = arguments.image_size or IMAGE_SIZES
    epochs = arguments.epochs

    from edgetl.data.sample import write_sample_data

    seconds: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        data = scratch / "digits"
        write_sample_data(data)
        for size in sizes:
            # Repeats interleave the three runs, so that a slow spell of the machine falls on all of them alike.
            runs = [
                {name: measure(data, scratch, size, name, repeat, epochs) for name in RUNS}
                for repeat in range(arguments.repeats)
            ]
            seconds[size] = {name: statistics.median(run[name]["seconds"] for run in runs) for name in RUNS}
            train_images = runs[0]["uncached"]["train_images"]

    images = train_images * epochs
    print(
        f"MobileNetV2 alpha {ALPHA}, batch {BATCH_SIZE}, {train_images} training images, {epochs} epochs per stage, "
        f"{os.cpu_count()} CPU(s); median of {arguments.repeats} fresh processes: images/s (stage seconds)"
    )
    header = f"{'size':>6} {'stage 1 uncached':>20} {'stage 1 cached':>20} {'stage 2':>20} {'cached/uncached':>16}"
    print(f"{header}  target >= {TARGET_RATIO:.0f}x")
    for size, row in seconds.items():
        cells = [f"{images / row[name]:8.1f} ({row[name]:5.2f} s)" for name in RUNS]
        ratio = row["uncached"] / row["cached"]
        verdict = ("met" if ratio >= TARGET_RATIO else "not met") if epochs == EPOCHS else f"(set for {EPOCHS} epochs)"
        print(f"{size:>4}px {cells[0]:>20} {cells[1]:>20} {cells[2]:>20} {ratio:>15.1f}x  {verdict}")


if __name__ == "__main__":
    main()
