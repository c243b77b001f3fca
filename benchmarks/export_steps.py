"""Where an export's memory goes, step by step: one `edgetl export` run in this process, with each progress step's
resident memory at its start, its highest sample (every 20 ms) and the process's high-water mark (VmHWM, which no
sampling misses) at its end.

    PYTHONPATH=src python benchmarks/export_steps.py MODEL --labels LABELS --calibration IMAGES \
        [--normalization tf] [--formats a,b] [--out DIR]

With no --formats, the default formats and their int8 twins (`edgetl export --int8`). The table is printed when
the export ends, steps in the order they ended (a step inside another ends first); docs/benchmarks.md has the
figures of export cost's seventh and eighth rounds. Linux only (/proc/self/status).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

SAMPLE_SECONDS = 0.02


def status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--calibration", type=Path, required=True)
    parser.add_argument("--normalization", default="tf")
    parser.add_argument("--formats", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from edgetl import progress

    started = time.perf_counter()
    open_steps: list[dict] = []
    ended: list[dict] = []
    lock = threading.Lock()
    running = True

    def sample() -> None:
        while running:
            rss = status_bytes("VmRSS")
            with lock:
                for record in open_steps:
                    record["peak"] = max(record["peak"], rss)
            time.sleep(SAMPLE_SECONDS)

    class Recorder(progress.Reporter):
        def start(self, description: str, total: int | None) -> progress.Step:
            rss = status_bytes("VmRSS")
            step = progress.Step()
            step.record = {"step": description, "at": time.perf_counter(), "start": rss, "peak": rss}
            step.record["depth"] = len(open_steps)
            with lock:
                open_steps.append(step.record)
            return step

        def stop(self, step: progress.Step) -> None:
            record = step.record
            with lock:
                open_steps.remove(record)
            record.update(seconds=time.perf_counter() - record["at"], hwm=status_bytes("VmHWM"))
            ended.append(record)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    import edgetl

    options = {"labels": args.labels, "calibration": args.calibration, "normalization": args.normalization}
    with tempfile.TemporaryDirectory(prefix="edgetl-steps-") as work, progress.reporting(Recorder()):
        out = args.out or Path(work) / "export"
        if args.formats:
            edgetl.export(args.model, args.formats, out=out, **options)
        else:
            edgetl.export(args.model, int8=True, out=out, **options)
    running = False
    sampler.join()

    print(f"{'ended s':>8} {'step':<72} {'s':>6} {'start GB':>9} {'peak GB':>8} {'HWM GB':>7}")
    for record in ended:
        name = ("  " * record["depth"] + record["step"])[:72]
        print(
            f"{record['at'] + record['seconds'] - started:8.1f} {name:<72} {record['seconds']:6.1f} "
            f"{record['start'] / 1e9:9.2f} {record['peak'] / 1e9:8.2f} {record['hwm'] / 1e9:7.2f}"
        )
    print(f"high-water mark {status_bytes('VmHWM') / 1e9:.2f} GB, {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
