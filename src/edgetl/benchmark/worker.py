"""The device-side bench in a process of its own: `python -m edgetl.benchmark.worker REQUEST.json`.

Two callers run it: the fresh process each exported file is measured in (`exported.measure_isolated`), so that its
load time and memory peak are its own, and a board benched over SSH (remote.py), which has numpy, pillow, a runtime
and edgetl's source as a zip, and no TensorFlow. The request is a JSON file, not a second command line: it carries
the caller's `BenchSettings` whole, so the worker has no defaults of its own to keep in step with the CLI's.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgetl.benchmark.exported import Measured, bench_model_files, measure_file
from edgetl.benchmark.settings import BenchSettings
from edgetl.errors import EdgetlError
from edgetl.files import atomic_write
from edgetl.runtime.foreign import ModelFlags


@dataclass(frozen=True)
class WorkerRequest:
    models: list[str]
    settings: BenchSettings
    threads: list[int | None]
    out: str  # the rows, as JSON
    probabilities: str  # each row's probabilities, as .npz (row0, row1, ...)
    # What the models run on: labelled images (class folders or a file,label CSV), each row then in a fresh process
    # of its own when `isolate`; or decoded `pixels` and label indices (.npz), every row measured in this process.
    images: str | None = None
    isolate: bool = True
    pixels: str | None = None
    provider: str = "cpu"  # "cpu", or "auto": the runtime's own choice (CUDA where onnxruntime has it)
    format_name: str | None = None  # the row's format; None: read from the file's name
    labels: str | None = None  # for files without metadata, as `--labels`
    normalization: str | None = None  # for files without metadata, as `--normalization`

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> WorkerRequest:
        raw = json.loads(text)
        return cls(**(raw | {"settings": BenchSettings(**raw["settings"])}))

    @property
    def flags(self) -> ModelFlags:
        return ModelFlags(Path(self.labels) if self.labels else None, self.normalization, where_missing=True)


def run(request: WorkerRequest) -> list[Measured]:
    models = [Path(model) for model in request.models]
    if request.pixels is None:
        return bench_model_files(
            models, Path(request.images), request.settings, request.threads, request.isolate, request.flags
        )
    with np.load(request.pixels) as stored:
        pixels, labels = stored["pixels"], stored["labels"]
    return [
        # This process measures one file: its memory peak belongs to that format alone.
        measure_file(
            model,
            pixels,
            labels,
            request.settings,
            threads,
            request.provider,
            "format",
            request.format_name,
            request.flags,
        )  # fmt: skip
        for model in models
        for threads in request.threads
    ]


def write_measured(measured: list[Measured], out: Path, probabilities_out: Path) -> None:
    atomic_write(out, json.dumps([m.row.to_dict() for m in measured], indent=1))
    buffer = io.BytesIO()
    np.savez(buffer, **{f"row{i}": m.probabilities for i, m in enumerate(measured)})
    atomic_write(probabilities_out, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        print("usage: python -m edgetl.benchmark.worker REQUEST.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        request = WorkerRequest.from_json(Path(arguments[0]).read_text(encoding="utf-8"))
        write_measured(run(request), Path(request.out), Path(request.probabilities))
    except EdgetlError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
