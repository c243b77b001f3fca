"""Peak memory and throughput of `edgetl train` as the dataset grows, measured in one run.

Synthetic JPEG photos (10 classes of oriented stripes over a tinted, noisy background, 320x256 px, so the model has
something to learn) are generated once under --data-root (outside the repository); the datasets of each size are
folders of links into the largest. Each size is trained by a fresh `python -m edgetl train` process with the
README's flags (MobileNetV2 alpha 0.35, 224 px, one epoch of stage 1 on cached features; at --stage2-images also one
of stage 2 with the top 30 backbone layers unfrozen, in runs of their own). A randomly initialised backbone saved as
a local weights file stands in for ImageNet (no network here): the arithmetic, and so time and memory, are the same.
Peak resident memory is the child's own ru_maxrss (os.wait4); images/s are training images over each stage's wall
time from metrics.json (stage 1 includes computing the training and validation features). Every run's output is kept
in --data-root/logs.

`--before-source DIR` also runs another checkout's `src` (e.g. the code before streaming, from `git archive`) at
`--before-images`, interleaved with this code at the same sizes, so both meet the same load on a shared machine.

The targets: peak memory at 20,000 images within 1.15x of that at 5,000 (stage-1 runs); stage-1 and stage-2
images/s at 5,000 no worse than before; 50,000 images complete.

    PYTHONPATH=src python benchmarks/train_memory.py [--images 5000 20000 50000] [--before-source /tmp/old/src]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ALPHA = 0.35
IMAGE_SIZE = 224
CLASSES = 10
PHOTO_SIZE = (320, 256)  # width, height of the generated JPEGs
TARGET_MEMORY_RATIO = 1.15
TRAIN_FLAGS = [
    "--alpha", str(ALPHA), "--image-size", str(IMAGE_SIZE), "--epochs", "1", "--batch-size", "32", "--seed", "1",
    "--quiet",
]  # fmt: skip
STAGE2_FLAGS = ["--fine-tune-epochs", "1", "--fine-tune-layers", "30"]
# Stage 2 (one epoch, top 30 layers) is timed at these sizes only, in runs of their own: on 2 cores its epoch over
# 20,000 images takes longer than all the rest of that run. Memory is compared between runs of stage 1 alone.
STAGE2_IMAGES = [5000]


def photo(label: int, rng: np.random.Generator) -> np.ndarray:
    """Stripes whose angle is the class, with a random phase, tint and noise."""
    width, height = PHOTO_SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = np.pi * label / CLASSES + rng.normal(0, 0.05)
    period = rng.uniform(18, 30)
    wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period + rng.uniform(0, 2 * np.pi))
    tint = rng.uniform(60, 200, 3).astype(np.float32)
    pixels = tint + 50 * wave[..., None] + rng.normal(0, 20, (height, width, 3)).astype(np.float32)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def generate(root: Path, count: int) -> Path:
    """`count` JPEGs in class folders under root/all (added to what is there already)."""
    from PIL import Image

    folder = root / "all"
    rng = np.random.default_rng(0)
    for index in range(count):
        label = index % CLASSES
        path = folder / f"class{label}" / f"{index:06d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(label, rng)).save(path, "JPEG", quality=90)
    return folder


def subset(root: Path, count: int) -> Path:
    """A folder of links to the first `count` generated photos."""
    folder = root / f"images-{count}"
    if not folder.is_dir():
        staging = root / f".images-{count}"
        for index in range(count):
            label = index % CLASSES
            link = staging / f"class{label}" / f"{index:06d}.jpg"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(root / "all" / f"class{label}" / f"{index:06d}.jpg")
        staging.rename(folder)
    return folder


def backbone_weights(root: Path) -> Path:
    weights = root / f"backbone-{IMAGE_SIZE}.weights.h5"
    if not weights.exists():
        import keras

        from edgetl.models.backbones import get_backbone
        from edgetl.models.classifier import build_backbone

        keras.utils.set_random_seed(1)
        build_backbone(get_backbone("mobilenetv2"), IMAGE_SIZE, ALPHA, "none").save_weights(weights)
    return weights


def train_once(root: Path, source: Path, name: str, count: int, weights: Path, stage2: bool) -> dict:
    """One `edgetl train` in a fresh process running the code in `source`; its peak RSS, stage figures, output log."""
    label = f"{name}-{count}{'-stage2' if stage2 else ''}"
    out = root / "runs" / label
    log_path = root / "logs" / f"{label}-{time.strftime('%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "edgetl", "train", str(subset(root, count)), "--out", str(out), "--overwrite"]
    command += ["--weights", str(weights), *TRAIN_FLAGS, *(STAGE2_FLAGS if stage2 else [])]
    environment = dict(os.environ, PYTHONPATH=str(source), TF_CPP_MIN_LOG_LEVEL="2")
    began = time.perf_counter()
    with log_path.open("w") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{label} failed; see {log_path}")
    metrics = json.loads((out / "metrics.json").read_text())
    train_images = metrics["images"]["train"]
    stages = metrics["stage_seconds"]
    return {
        "peak_gb": usage.ru_maxrss * 1024 / 1e9,  # ru_maxrss is in KiB on Linux
        "stage1": train_images / stages["stage1"],
        "stage2": train_images / stages["stage2"] if stage2 else None,
        "seconds": seconds,
        "accuracy": metrics["test_accuracy"],
        "cache": metrics.get("cache", "memory (before streaming)"),
        "log": str(log_path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="*", default=[5000, 20000, 50000], help="stage-1 runs")
    parser.add_argument("--stage2-images", type=int, nargs="*", default=STAGE2_IMAGES, help="stage 1 + 2 runs")
    parser.add_argument("--data-root", type=Path, default=Path("/tmp/edgetl-train-memory"))
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--before-source", type=Path, help="another checkout's src to measure as 'before'")
    parser.add_argument("--before-images", type=int, nargs="*", default=[5000], help="with --before-source")
    arguments = parser.parse_args()
    root = arguments.data_root
    before_images = set(arguments.before_images) if arguments.before_source else set()
    generate(root, max([*arguments.images, *arguments.stage2_images, *before_images]))
    weights = backbone_weights(root)
    plan = [(count, False) for count in sorted(set(arguments.images) | before_images)]
    plan += [(count, True) for count in sorted(arguments.stage2_images)]
    rows = []
    for count, stage2 in plan:
        # Before and after one after the other, so that both meet the same load on a shared machine.
        codes = [("before", arguments.before_source)] if count in before_images or (stage2 and before_images) else []
        codes += [("after", arguments.source)] if count in arguments.images or stage2 else []
        for name, source in codes:
            rows.append((name, count, train_once(root, source, name, count, weights, stage2)))
            print(rows[-1], flush=True)

    print(f"\nMobileNetV2 alpha {ALPHA}, {IMAGE_SIZE} px, batch 32, 1 epoch per stage, {os.cpu_count()} CPU(s)")
    print(f"{'code':>7} {'images':>7} {'peak RSS':>9} {'stage 1 img/s':>14} {'stage 2 img/s':>14} {'wall':>7}  cache")
    for name, count, row in rows:
        print(
            f"{name:>7} {count:>7} {row['peak_gb']:>7.2f}GB {row['stage1']:>14.1f} "
            f"{'-' if row['stage2'] is None else format(row['stage2'], '.1f'):>14} "
            f"{row['seconds']:>6.0f}s  {row['cache']}"
        )
    stage1_only = {(name, count): row for name, count, row in rows if row["stage2"] is None}
    with_stage2 = {(name, count): row for name, count, row in rows if row["stage2"] is not None}
    if ("after", 5000) in stage1_only and ("after", 20000) in stage1_only:
        ratio = stage1_only["after", 20000]["peak_gb"] / stage1_only["after", 5000]["peak_gb"]
        verdict = "met" if ratio <= TARGET_MEMORY_RATIO else "not met"
        print(f"peak RSS 20,000 / 5,000 images: {ratio:.2f}x (target <= {TARGET_MEMORY_RATIO}x: {verdict})")
    for runs, stage in ((stage1_only, "stage1"), (with_stage2, "stage1"), (with_stage2, "stage2")):
        for name, count in runs:
            if name == "after" and ("before", count) in runs:
                change = runs["after", count][stage] / runs["before", count][stage]
                print(f"{stage} images/s at {count} images, after / before: {change:.2f}x (target >= 1)")


if __name__ == "__main__":
    main()
