"""The cheap first look at a candidate: its file in the target format, built from untrained weights, and timed
here and on each board.

Latency, size and memory depend on the architecture and the format, not on the values of the weights, so a
candidate that cannot meet the budget is dropped before any training. The untrained file goes through the same
export code as a trained one (int8 calibration included) with no agreement gate, since an untrained network's
answers mean nothing; the trained file is timed again the same way (`time_file`) once a finalist is exported.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from edgetl.benchmark.settings import BenchSettings, SshSettings
from edgetl.data.folder import Example
from edgetl.errors import EdgetlError
from edgetl.files import atomic_write
from edgetl.tuning.result import Measurement
from edgetl.tuning.space import Candidate

log = logging.getLogger(__name__)

# Calibration images of an untrained file (at least one per class, as calibration requires): the int8 ranges of
# random weights are meaningless, so a few images only give the converter the shapes it needs.
PROBE_CALIBRATION_IMAGES = 8
# Validation images each file is benched on: the latency figure repeats one image, so a few are enough, and each
# board receives them over SSH.
TIMING_IMAGES = 16
# Every timing of the search, untrained file or trained, here or on a board: batch 1 (the budget is a latency per
# image), the bench's runs and warm-up.
TIMING = BenchSettings(batch=1)


class BoardError(EdgetlError):
    """A board named with --remote could not time a file: the constraint cannot be checked there."""


@dataclass(frozen=True)
class ProbeData:
    """What every probe shares: the class names, the images that calibrate and verify the untrained files, and a
    CSV of file,label rows the bench times them on."""

    class_names: list[str]
    verification: list[Example]
    calibration_pool: list[Example]
    timing_images: Path

    @property
    def timing_pairs(self) -> list[tuple[Path, str]]:
        return [(example.path, self.class_names[example.label]) for example in self.verification]


def probe_data(split, folder: Path) -> ProbeData:
    """The first validation images of `split` verify and are timed on; its training images calibrate."""
    verification = list(split.validation[:TIMING_IMAGES]) or list(split.train[:TIMING_IMAGES])
    csv_path = Path(folder) / "timing-images.csv"
    lines = [["file", "label"], *([str(e.path.resolve()), split.class_names[e.label]] for e in verification)]
    text = io.StringIO()
    csv.writer(text).writerows(lines)
    atomic_write(csv_path, text.getvalue())
    return ProbeData(list(split.class_names), verification, list(split.train), csv_path)


def build_untrained_file(candidate: Candidate, data: ProbeData, format_name: str, folder: Path) -> Path:
    """The candidate's file in `format_name`, from untrained weights, written under `folder`."""
    from edgetl.data.pipeline import decode_subset
    from edgetl.exporting.exporter import export_source
    from edgetl.exporting.formats import FORMATS, ExportOptions
    from edgetl.exporting.source import ExportSource
    from edgetl.models.backbones import get_backbone
    from edgetl.models.classifier import HeadConfig, build_classifier
    from edgetl.runtime.metadata import ModelMetadata
    from edgetl.tfquiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    spec = get_backbone(candidate.backbone)
    keras.backend.clear_session()  # a search builds many models in one process
    keras.utils.set_random_seed(0)
    model = build_classifier(
        spec,
        num_classes=len(data.class_names),
        image_size=candidate.image_size,
        alpha=candidate.alpha,
        weights="none",
        head=HeadConfig(hidden_units=candidate.hidden_units),
    )
    metadata = ModelMetadata(
        labels=data.class_names,
        input_size=(candidate.image_size, candidate.image_size),
        normalization=spec.normalization,
        backbone=spec.name,
    )
    verification = decode_subset(data.verification, candidate.image_size, metadata.resize, "probe images")
    source = ExportSource(Path(folder), model, metadata, verification, data.calibration_pool, data.class_names)
    options = ExportOptions(min_agreement=0.0)
    if FORMATS[format_name].calibrated:
        samples = max(PROBE_CALIBRATION_IMAGES, len(data.class_names))  # calibration sees every class once
        options = ExportOptions(calibration_samples=samples, min_agreement=0.0)
    export_source(source, [format_name], options)
    return source.exports_dir / FORMATS[format_name].filename


def time_file(
    path: Path,
    data: ProbeData,
    threads: int | None,
    remotes: list[str],
    ssh: SshSettings,
) -> list[Measurement]:
    """`path` timed at batch 1 here (in a fresh process, so its memory peak is its own) and on each board."""
    from edgetl.benchmark.exported import bench_model_files, default_format_name
    from edgetl.runtime.cpu import cpu_class

    measurements = []
    for measured in bench_model_files([path], data.timing_images, TIMING, [threads]):
        measurements.append(_measurement(measured.row, "local", cpu_class()))
    if remotes:
        from edgetl.benchmark.remote import bench_remotes

        exports = [(default_format_name(path), path)]
        measured_there, errors = bench_remotes(remotes, exports, data.timing_pairs, TIMING, [threads], ssh)
        if errors:
            raise BoardError(f"{errors[0]} (the budget must hold on every --remote board)")
        for measured in measured_there:
            measurements.append(_measurement(measured.row, measured.row.host, cpu_class(machine=measured.row.device)))
    return measurements


def _measurement(row, host: str, cpu: str) -> Measurement:
    return Measurement(
        host=host,
        cpu=cpu,
        runtime=row.runtime,
        threads=row.threads,
        p50_ms=row.latency.p50,
        p90_ms=row.latency.p90,
        peak_rss_bytes=row.peak_rss_bytes,
        size_bytes=row.size_bytes,
    )
