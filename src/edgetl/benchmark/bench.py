"""`edgetl bench RUN`: the Keras original and every exported file, side by side on the run's test split.

Keras is measured in this process (TensorFlow is already loaded for it); every exported file in a fresh process
through the device bench, with this run's decoded test pixels, so each row's load time and memory peak are its own.
"""

from __future__ import annotations

import logging
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgetl.benchmark.exported import (
    BenchOptionError,
    Measured,
    bench_model_files,
    cuda_available,
    local_row,
    measure_isolated,
    row_name,
    row_settings,
)
from edgetl.benchmark.fingerprint import machine_fingerprint
from edgetl.benchmark.report import to_json
from edgetl.benchmark.result import BenchReport, BenchRow
from edgetl.benchmark.settings import REMOTE_SAMPLE_IMAGES, BenchSettings
from edgetl.benchmark.timing import harness_overhead_ms, measure_latency, measure_throughput
from edgetl.data.pipeline import decode_subset
from edgetl.errors import DataError, WriteError
from edgetl.exporting.verify import fidelity
from edgetl.files import atomic_write
from edgetl.progress import step
from edgetl.run import BENCH_RESULTS, RunDir, changed_since_export, record_verification
from edgetl.runtime.bounds import check_batch
from edgetl.runtime.foreign import ModelFlags
from edgetl.runtime.runtimes import MODEL_SUFFIXES, RUNTIME_DISTRIBUTIONS
from edgetl.tfquiet import import_tensorflow_quietly

log = logging.getLogger(__name__)


def machine_title(fingerprint: dict, accelerators: list[str]) -> str:
    versions = fingerprint.get("versions", {})
    runtimes = ", ".join(f"{name} {versions[name]}" for name in RUNTIME_DISTRIBUTIONS if name in versions)
    gpu = ", ".join(accelerators) if accelerators else "no GPU"
    return (
        f"edgetl bench on {fingerprint['cpu']}, {fingerprint['cores']} cores, {fingerprint['architecture']}, {gpu}"
        f" | {runtimes}"
    )


def _keras_rows(run: RunDir, model, load_ms: float, test, settings: BenchSettings, tf_device: str, device: str):
    """The tf.function row (what a serving stack runs) and the model.predict row (what a notebook runs)."""
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or None
    single = test.pixels[:1].astype(np.float32)
    batch_pixels = np.resize(test.pixels, (settings.batch, *test.pixels.shape[1:])).astype(np.float32)
    with tf.device(tf_device):

        def compiled(pixels):
            return forward(tf.constant(pixels, dtype=tf.float32)).numpy()

        def predict(pixels):
            return model.predict(pixels, batch_size=settings.batch, verbose=0)

        probabilities = np.concatenate(
            [
                compiled(test.pixels[i : i + settings.batch].astype(np.float32))
                for i in range(0, len(test.labels), settings.batch)
            ]
        )
        timings = {}
        for name, call in (("keras", compiled), ("keras-predict", predict)):
            latency = measure_latency(lambda call=call: call(single), settings.runs, settings.warmup, settings.settle)
            throughput = measure_throughput(
                lambda call=call: call(batch_pixels), settings.batch, settings.throughput_runs
            )
            timings[name] = (latency, throughput)
    runtime = f"tensorflow {tf.__version__}"
    provider = tf_device.strip("/").replace("device:", "")
    rows = [
        local_row(
            name,
            run.model,
            probabilities,
            test.labels,
            latency,
            throughput,
            settings.batch,
            threads=threads,
            runtime=runtime,
            provider=provider,
            device=device,
            load_ms=load_ms,
            peak_rss_scope="process",
        ).with_reference(1.0, 0.0)  # Keras is the reference itself
        for name, (latency, throughput) in timings.items()
    ]
    return rows, probabilities


def bench_run(
    run_path: Path,
    settings: BenchSettings | None = None,
    threads_values: list[int | None] | None = None,
    remotes: tuple[str, ...] = (),
    ssh=None,
    remote_images: int = REMOTE_SAMPLE_IMAGES,
) -> BenchReport:
    """Keras (tf.function and model.predict) and every exported file of RUN, here and on each remote board; the
    rows are kept in RUN/bench/bench.json."""
    settings = settings or BenchSettings()
    threads_values = threads_values or [None]
    run = RunDir(Path(run_path))
    run.require_trained()
    metadata = run.read_metadata()
    check_batch(settings.batch, metadata.input_size, "--batch")
    split = run.read_split()
    test = decode_subset(split.test, metadata.input_size[0], metadata.resize, "test images")
    if len(test.labels) == 0:
        raise DataError(f"{split.root}: no test image could be decoded")

    import_tensorflow_quietly()
    import tensorflow as tf

    start = time.perf_counter()
    model = run.load_model()
    load_ms = (time.perf_counter() - start) * 1000.0
    accelerators = [gpu.name.replace("/physical_device:", "") for gpu in tf.config.list_physical_devices("GPU")]
    exports, untrusted = _bench_exports(run)
    jobs = [
        (name, path, threads, provider)
        for name, path in exports
        for threads, provider in row_settings(path, threads_values)
    ]
    keras_devices = [("/CPU:0", platform.machine())] + ([("/GPU:0", "gpu")] if accelerators else [])
    rows, keras_probabilities, host_probabilities = [], None, {}
    with step("benchmarking", total=len(keras_devices) + len(jobs)) as benching:
        for tf_device, device in keras_devices:
            benching.describe(f"benchmarking keras on {tf_device.strip('/')}")
            device_rows, probabilities = _keras_rows(run, model, load_ms, test, settings, tf_device, device)
            rows += device_rows
            keras_probabilities = probabilities if keras_probabilities is None else keras_probabilities
            benching.advance()
        with tempfile.TemporaryDirectory(prefix="edgetl-bench-") as scratch:
            pixels_file = Path(scratch) / "test.npz"
            np.savez(pixels_file, pixels=test.pixels, labels=test.labels)
            for format_name, path, threads, provider in jobs:
                benching.describe(f"benchmarking {row_name(format_name, threads, provider)}")
                measured = measure_isolated(path, pixels_file, settings, threads, provider, format_name)
                rows.append(measured.row.with_reference(*fidelity(measured.probabilities, keras_probabilities)))
                host_probabilities.setdefault(format_name, measured.probabilities)
                benching.advance()
        benching.describe("benchmarked")
    if cuda_available():
        accelerators.append("onnxruntime CUDA")

    errors: list[str] = untrusted
    differences: dict[int, str] = {}
    if remotes and exports:
        from edgetl.benchmark.remote import bench_remotes

        sample = list(range(min(remote_images, len(test.labels))))
        images = [(test.examples[i].path, metadata.labels[test.labels[i]]) for i in sample]
        measured, failures = bench_remotes(list(remotes), exports, images, settings, threads_values, ssh)
        errors += failures
        # The boards decode the same files in the same order: compare them with Keras and with this machine's
        # answers on that sample, and record each board as a place the file was verified.
        for board in measured:
            here = host_probabilities.get(board.row.format)
            row, difference = verify_on_board(
                run, board, keras_probabilities[sample], None if here is None else here[sample], test.labels[sample]
            )
            if difference:
                differences[len(rows)] = difference
            rows.append(row)
    elif remotes:
        errors.append(f"{run.path}: no exported .tflite/.onnx file to bench on the boards; run `edgetl export` first")
    title = machine_title(machine_fingerprint(), accelerators)
    report = BenchReport(rows, title, harness_overhead_ms(), errors=errors, differences=differences)
    # The run keeps its latest bench, so `edgetl report` can show it beside the exports it measured; a run that
    # cannot be written to (a read-only copy) is still benched.
    try:
        atomic_write(run.bench_dir / BENCH_RESULTS, to_json(report))
    except WriteError as error:
        log.warning("the bench is not kept in the run: %s", error)
    return report


def verify_on_board(
    run: RunDir, board: Measured, keras: np.ndarray, host: np.ndarray | None, labels: np.ndarray
) -> tuple[BenchRow, str | None]:
    """A board's row held to Keras on the sample it ran, its figures added to the file's record in exports.json
    (`verified_on`), and, where it names another class than this machine for any image, how it differs."""
    from edgetl.exporting.consumers import measured_where
    from edgetl.exporting.verify import compare
    from edgetl.runtime.cpu import cpu_class

    on_board = compare(board.probabilities, keras, labels)
    row = replace(board.row.with_reference(*fidelity(board.probabilities, keras)), reference_top1=on_board.keras_top1)
    where = measured_where(row.runtime, "default", on_board, cpu=cpu_class(machine=row.device), host=row.host)
    if run.exports_index.exists():
        record_verification(run.exports_index, row.format, where)
    if host is None:
        return row, None
    changed = int(np.sum(board.probabilities.argmax(axis=1) != host.argmax(axis=1)))
    if changed == 0:
        return row, None
    here = compare(host, keras, labels)
    top1 = "" if on_board.top1 is None else f", top-1 {on_board.top1:.4f} (here {here.top1:.4f})"
    return row, (
        f"names another class than this machine on {changed} of {len(labels)} images; agreement with Keras "
        f"{on_board.agreement:.4f} (here {here.agreement:.4f}){top1}"
    )


def _bench_exports(run: RunDir) -> tuple[list[tuple[str, Path]], list[str]]:
    """(format, path) of each exported file the device bench can run, and why the others that differ from their
    record (changed since export verified them) are not benched: they are reported, never measured as verified."""
    exports, untrusted = [], []
    for record in run.read_exports():
        path = run.path / record["path"]
        if not path.exists():
            log.warning("%s: listed in %s but missing; skipped", path, run.exports_index.name)
        elif path.is_dir() or path.suffix.lower() not in MODEL_SUFFIXES:
            log.info("%s: %s is not a single .tflite/.onnx file; not benched", path, record["format"])
        elif problem := changed_since_export(run.path, record, run.exports_index):
            untrusted.append(problem)
        else:
            exports.append((record["format"], path))
    return exports, untrusted


def bench_files(
    models: list[Path],
    images: Path,
    settings: BenchSettings | None = None,
    threads_values: list[int | None] | None = None,
    remotes: tuple[str, ...] = (),
    ssh=None,
    flags: ModelFlags | None = None,
) -> BenchReport:
    """The device bench of exported files on labelled images (no TensorFlow), here and on each remote board;
    `flags` describe files from other tools that carry no metadata."""
    from edgetl.benchmark.exported import default_format_name
    from edgetl.benchmark.labelled import labelled_images

    settings = settings or BenchSettings()
    if remotes and flags is not None and flags.given:
        raise BenchOptionError(
            f"{' and '.join(flags.given)}: boards are benched with files that carry their labels; "
            f"bench this file here only, or export it with edgetl"
        )
    rows = [m.row for m in bench_model_files(models, images, settings, threads_values, flags=flags)]
    errors: list[str] = []
    if remotes:
        from edgetl.benchmark.remote import bench_remotes

        exports = [(default_format_name(Path(model)), Path(model)) for model in models]
        pairs = labelled_images(images)
        measured, errors = bench_remotes(list(remotes), exports, pairs, settings, threads_values, ssh)
        rows += [m.row for m in measured]
    accelerators = ["onnxruntime CUDA"] if cuda_available() else []
    return BenchReport(rows, machine_title(machine_fingerprint(), accelerators), harness_overhead_ms(), errors=errors)
