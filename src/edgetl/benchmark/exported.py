"""The bench of exported .tflite/.onnx files on labelled images, with numpy, pillow and a runtime only.

This module never imports TensorFlow, so a board can bench itself (`edgetl bench MODEL --images DIR`), and
`edgetl bench RUN` uses it for every exported file. Each (file, threads, provider) is measured in a fresh
process (worker.py), so its load time, memory peak and warm-up are its own and not those of whatever ran before it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.benchmark.fingerprint import machine_fingerprint, peak_rss_bytes
from edgetl.benchmark.labelled import decode_labelled
from edgetl.benchmark.result import BenchRow
from edgetl.benchmark.settings import BenchSettings
from edgetl.benchmark.timing import Latency, harness_overhead_ms, measure_latency, measure_throughput
from edgetl.errors import EdgetlError, ModelFileError
from edgetl.exporting.formats import FORMATS
from edgetl.exporting.verify import predict_in_batches
from edgetl.progress import step
from edgetl.runtime.bounds import check_batch, check_threads
from edgetl.runtime.engine import Engine, is_available, open_engine
from edgetl.runtime.foreign import ModelFlags
from edgetl.runtime.runtimes import MODEL_SUFFIXES, runtimes_for

log = logging.getLogger(__name__)

CHILD_TIMEOUT_S = 3600


class BenchOptionError(EdgetlError):
    """A bench option has a value the bench cannot use."""


@dataclass(frozen=True)
class Measured:
    row: BenchRow
    probabilities: np.ndarray  # (images, classes), in the order of the images


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    if len(labels) == 0:
        return 0.0
    k = min(k, probabilities.shape[1])
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(best == labels[:, None], axis=1)))


def _import_runtime(suffix: str) -> None:
    # The runtime's module is imported before the load is timed: load time is the model's, not the import's.
    for runtime in runtimes_for(suffix, light_only=True).values():
        if is_available(runtime.package):
            try:
                importlib.import_module(runtime.module)
                return
            except ImportError:  # e.g. tflite-runtime 2.14 under NumPy 2; open_engine reports the real problem
                continue


def _use_cpu_only(engine: Engine) -> None:
    """The CPU row of an ONNX file on a machine whose onnxruntime would pick CUDA."""
    session = getattr(engine, "session", None)
    if session is not None and engine.provider != "CPUExecutionProvider":
        session.set_providers(["CPUExecutionProvider"])
        engine.provider = session.get_providers()[0]
        engine.processor = "cpu"


def _batch_of(pixels: np.ndarray, batch: int) -> np.ndarray:
    return np.resize(pixels, (batch, *pixels.shape[1:])).astype(pixels.dtype, copy=False)


def measure_file(
    path: Path,
    pixels: np.ndarray,
    labels: np.ndarray,
    settings: BenchSettings,
    threads: int | None = None,
    provider: str = "auto",
    peak_rss_scope: str = "process",
    format_name: str | None = None,
    flags: ModelFlags | None = None,
) -> Measured:
    """Load `path` and measure it in this process: accuracy, batch-1 latency, throughput, load time, memory."""
    path = Path(path)
    _import_runtime(path.suffix.lower())
    start = time.perf_counter()
    engine = open_engine(path, threads=threads, flags=flags)
    if provider == "cpu":
        _use_cpu_only(engine)
    load_ms = (time.perf_counter() - start) * 1000.0
    probabilities = predict_in_batches(engine.predict, pixels, settings.batch)
    single = pixels[:1]
    latency = measure_latency(lambda: engine.predict(single), settings.runs, settings.warmup, settings.settle)
    throughput = None
    batch_pixels = _batch_of(pixels, settings.batch)
    try:
        throughput = measure_throughput(
            lambda: engine.predict(batch_pixels), settings.batch, settings.throughput_runs, warmup=1
        )
    except (ValueError, RuntimeError) as error:  # a file fixed to batch 1: no throughput figure, not a failure
        log.info("%s: no throughput at batch %d (%s)", path, settings.batch, error)
    # A row's device: the machine's architecture, or the GPU that ran it.
    device = "cuda" if engine.processor == "cuda" else platform.machine()
    row = local_row(
        format_name or default_format_name(path),
        path,
        probabilities,
        labels,
        latency,
        throughput,
        settings.batch,
        threads=threads,
        runtime=engine.runtime,
        provider=engine.provider,
        device=device,
        load_ms=load_ms,
        peak_rss_scope=peak_rss_scope,
    )
    return Measured(row, probabilities)


def local_row(
    format_name: str,
    path: Path,
    probabilities: np.ndarray,
    labels: np.ndarray,
    latency: Latency,
    throughput: float | None,
    batch: int,
    *,
    threads: int | None,
    runtime: str,
    provider: str,
    device: str,
    load_ms: float,
    peak_rss_scope: str,
) -> BenchRow:
    """A row measured on this machine: accuracy from its probabilities; the file's size, the memory peak, the
    harness overhead and the machine's fingerprint read here. No reference yet (`BenchRow.with_reference`)."""
    return BenchRow(
        format=format_name,
        path=str(path),
        size_bytes=path.stat().st_size,
        top1=top_k_accuracy(probabilities, labels, 1),
        top5=top_k_accuracy(probabilities, labels, 5),
        agreement=None,
        max_probability_diff=None,
        latency=latency,
        throughput_ips=throughput,
        batch=batch,
        threads=threads,
        runtime=runtime,
        provider=provider,
        device=device,
        load_ms=load_ms,
        peak_rss_bytes=peak_rss_bytes(),
        peak_rss_scope=peak_rss_scope,
        images=len(labels),
        host="local",
        harness_overhead_ms=harness_overhead_ms(),
        fingerprint=machine_fingerprint() | {"runtime": runtime, "provider": provider, "threads": threads},
    )


def default_format_name(path: Path) -> str:
    """A format name for a bare file, as `edgetl export` names its files (FORMATS): model_int8.tflite -> tflite-int8;
    a file no format's name fits is called by its suffix."""
    suffix = path.suffix.lower()
    stem = path.stem.lower()
    for name, export_format in FORMATS.items():
        variant = Path(export_format.filename).stem.removeprefix("model")  # "_int8", "" for model.onnx
        if Path(export_format.filename).suffix == suffix and variant and stem.endswith(variant.lstrip("_")):
            return name
    return suffix.lstrip(".")


def cuda_available() -> bool:
    if not is_available("onnxruntime"):
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def row_settings(path: Path, threads_values: list[int | None]) -> list[tuple[int | None, str]]:
    """(threads, provider) pairs to measure a file with: one CPU row per thread count, plus CUDA where it exists."""
    pairs = [(threads, "cpu") for threads in threads_values]
    if path.suffix.lower() == ".onnx" and cuda_available():
        pairs.append((None, "auto"))
    return pairs


def row_name(format_name: str, threads: int | None, provider: str) -> str:
    """A bench row as the progress names it: "tflite-int8, 2 threads"."""
    return f"{format_name}, {threads or 'default'} thread(s)" + (", CUDA if available" if provider == "auto" else "")


def measure_isolated(
    path: Path,
    pixels_file: Path,
    settings: BenchSettings,
    threads: int | None,
    provider: str,
    format_name: str | None = None,
    flags: ModelFlags | None = None,
) -> Measured:
    """`measure_file` in a fresh Python process, so the peak memory and load time belong to this file alone."""
    from edgetl.benchmark.worker import WorkerRequest

    with tempfile.TemporaryDirectory(prefix="edgetl-bench-") as scratch:
        out, probabilities_out = Path(scratch) / "row.json", Path(scratch) / "probabilities.npz"
        request = WorkerRequest(
            models=[str(path)],
            settings=settings,
            threads=[threads],
            out=str(out),
            probabilities=str(probabilities_out),
            pixels=str(pixels_file),
            provider=provider,
            format_name=format_name,
            labels=str(flags.labels) if flags and flags.labels else None,
            normalization=flags.normalization if flags else None,
        )
        request_file = Path(scratch) / "request.json"
        request_file.write_text(request.to_json(), encoding="utf-8")
        command = [sys.executable, "-m", "edgetl.benchmark.worker", str(request_file)]
        environment = os.environ | {"PYTHONPATH": _import_path()}
        result = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=environment)
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            raise ModelFileError(f"{path}: the bench process failed ({lines[-1] if lines else result.returncode})")
        row = BenchRow.from_dict(json.loads(out.read_text(encoding="utf-8"))[0], str(out))
        with np.load(probabilities_out) as stored:
            probabilities = stored["row0"]
    return Measured(row, probabilities)


def _import_path() -> str:
    """PYTHONPATH for a child: where this edgetl was imported from first, so it measures the same code."""
    package_root = str(Path(__file__).resolve().parents[2])
    inherited = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([package_root, inherited]) if inherited else package_root


def _model_files(models: list[Path]) -> list[Path]:
    for model in models:
        if not Path(model).is_file():
            raise ModelFileError(f"{model}: no such model file")
        if Path(model).suffix.lower() not in MODEL_SUFFIXES:
            raise ModelFileError(f"{model}: the device bench runs .tflite and .onnx files, not '{Path(model).suffix}'")
    return [Path(model) for model in models]


def bench_model_files(
    models: list[Path],
    images: Path,
    settings: BenchSettings,
    threads_values: list[int | None] | None = None,
    isolate: bool = True,
    flags: ModelFlags | None = None,
) -> list[Measured]:
    """Bench exported files on labelled images, without TensorFlow; one row per file x thread count (x provider)."""
    models = _model_files(models)
    threads_values = threads_values or [None]
    measured = []
    jobs = [(model, threads, provider) for model in models for threads, provider in row_settings(model, threads_values)]
    with tempfile.TemporaryDirectory(prefix="edgetl-bench-") as scratch:
        decoded: dict[tuple, Path] = {}  # files of the same input size and labels share one decoded set
        pixels_of: dict[Path, Path] = {}
        for model in models:
            engine = open_engine(model, flags=flags)
            check_batch(settings.batch, engine.input_size, "--batch")
            key = (tuple(engine.input_size), tuple(engine.labels), engine.metadata.resize)
            if key not in decoded:
                pixels, labels = decode_labelled(images, engine.labels, engine.input_size, engine.metadata.resize)
                decoded[key] = Path(scratch) / f"pixels{len(decoded)}.npz"
                np.savez(decoded[key], pixels=pixels, labels=labels)
            pixels_of[model] = decoded[key]
            del engine
        with step("benchmarking", len(jobs)) as benching:
            for model, threads, provider in jobs:
                benching.describe(f"benchmarking {row_name(model.name, threads, provider)}")
                if isolate:
                    measured.append(measure_isolated(model, pixels_of[model], settings, threads, provider, flags=flags))
                else:
                    with np.load(pixels_of[model]) as stored:
                        pixels, labels = stored["pixels"], stored["labels"]
                    measured.append(measure_file(model, pixels, labels, settings, threads, provider, flags=flags))
                benching.advance()
            benching.describe("benchmarked")
    return measured


def parse_threads(text: str | None) -> list[int | None]:
    if not text:
        return [None]
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BenchOptionError(f"--threads {text}: expected thread counts separated by commas, e.g. 1,2,4") from None
    if not values or any(value < 1 for value in values):
        raise BenchOptionError(f"--threads {text}: expected positive thread counts, e.g. 1,2,4")
    return [check_threads(value) for value in values]
