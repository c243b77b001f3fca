"""Images a call while an export verifies and ranks (exporting/verify.py RUNTIME_BATCH): speed and memory of each
exported file on the engine edgetl verifies it with (LiteRT, onnxruntime; default options), at each batch size.

Each file and batch size runs in a fresh process: the engine is opened, one call warms it, then the images run
`batch` at a time. Printed: milliseconds an image, and how far the process's resident memory grew from before the
engine was opened to after the run (what verification adds to an export's peak).

    python benchmarks/runtime_batch.py FILE... [--batches 1 2 8] [--images 96]

The files of `python benchmarks/export_cost.py` are in its work folder, e.g.
/tmp/edgetl-export-cost/out/{mnv2-224,xception-299}/exports/*.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ONE_RUN = """
import json, sys, time
import numpy as np
from edgetl.runtime.engine import open_engine

def resident_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

path, batch, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
before = resident_mb()
engine = open_engine(path)
height, width = engine.input_size
pixels = (np.random.default_rng(0).random((images, height, width, 3)) * 255).astype(np.float32)
before += pixels.nbytes / 2**20
engine.predict(pixels[:batch])
start = time.perf_counter()
for first in range(0, images, batch):
    engine.predict(pixels[first : first + batch])
seconds = time.perf_counter() - start
print(json.dumps({"ms_per_image": 1000 * seconds / images, "grew_mb": resident_mb() - before}))
"""


def measure(path: Path, batch: int, images: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", ONE_RUN, str(path), str(batch), str(images)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 8])
    parser.add_argument("--images", type=int, default=96)
    args = parser.parse_args()
    from edgetl.runtime.cpu import cpu_class

    print(f"CPU: {cpu_class()}; {args.images} images a run")
    print(f"{'file':<44}{'batch':>6}{'ms/image':>10}{'grew MB':>9}")
    for path in args.files:
        figures = {batch: measure(path, batch, args.images) for batch in args.batches}
        for batch, figure in figures.items():
            name = f"{path.parent.parent.name}/{path.name}"
            print(f"{name:<44}{batch:>6}{figure['ms_per_image']:>10.1f}{figure['grew_mb']:>9.0f}")
        smallest, largest = min(args.batches), max(args.batches)
        speed = figures[largest]["ms_per_image"] / figures[smallest]["ms_per_image"]
        memory = figures[largest]["grew_mb"] - figures[smallest]["grew_mb"]
        print(f"  batch {largest} against {smallest}: {speed:.2f}x the time an image, {memory:+.0f} MB")


if __name__ == "__main__":
    main()
