"""One row of the bench table, as measured and as stored in JSON. Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edgetl.benchmark.timing import Latency


@dataclass(frozen=True)
class BenchRow:
    format: str  # keras, keras-predict, tflite-float32, tflite-int8, onnx, ...
    path: str
    size_bytes: int
    top1: float
    top5: float
    agreement: float | None  # share of images whose top-1 equals Keras' (None: no Keras reference)
    max_probability_diff: float | None
    latency: Latency  # batch 1, after warm-up
    throughput_ips: float | None  # images per second at `batch` (None: the format has a fixed batch of 1)
    batch: int
    threads: int | None  # None: the runtime's own default
    runtime: str
    provider: str
    device: str  # the architecture (uname -m) for CPU rows, "cuda" / "gpu" for accelerator rows
    load_ms: float
    peak_rss_bytes: int | None
    peak_rss_scope: str  # "format": a fresh process per row; "process": the peak of a process shared by rows
    images: int
    host: str = ""  # "local" or the user@host a remote row came from
    harness_overhead_ms: float = 0.0
    fingerprint: dict = field(default_factory=dict)
    reference_top1: float | None = None  # Keras' top-1 on the images this row ran (a board runs a sample of them)

    @property
    def emulated(self) -> bool:
        return bool(self.fingerprint.get("emulated"))

    def with_reference(self, agreement: float, max_probability_diff: float) -> BenchRow:
        return replace(self, agreement=agreement, max_probability_diff=max_probability_diff)

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "path": self.path,
            "size_bytes": self.size_bytes,
            "top1": self.top1,
            "top5": self.top5,
            "agreement": self.agreement,
            "latency_ms": self.latency.to_dict(),
            "throughput_ips": self.throughput_ips,
            "threads": self.threads,
            "runtime": self.runtime,
            "device": self.device,
            "provider": self.provider,
            "max_probability_diff": self.max_probability_diff,
            "batch": self.batch,
            "runs": self.latency.runs,
            "load_ms": self.load_ms,
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_rss_scope": self.peak_rss_scope,
            "images": self.images,
            "host": self.host,
            "harness_overhead_ms": self.harness_overhead_ms,
            "emulated": self.emulated,
            "fingerprint": self.fingerprint,
            "reference_top1": self.reference_top1,
        }

    @classmethod
    def from_dict(cls, raw: dict, source: str = "bench JSON") -> BenchRow:
        """A row as `to_dict` wrote it, checked (edgetl.schemas): it may come from another machine."""
        from edgetl.schemas import bench_row_fields

        return cls.from_fields(bench_row_fields(raw, source))

    @classmethod
    def from_fields(cls, row) -> BenchRow:
        """A row from its checked fields (edgetl.schemas.BenchRowFields)."""
        latency = row.latency_ms
        return cls(
            format=row.format,
            path=row.path,
            size_bytes=row.size_bytes,
            top1=row.top1,
            top5=row.top1 if row.top5 is None else row.top5,
            agreement=row.agreement,
            max_probability_diff=row.max_probability_diff,
            latency=Latency(latency.p50, latency.p90, latency.p99, latency.mean, latency.std, latency.runs or row.runs),
            throughput_ips=row.throughput_ips,
            batch=row.batch,
            threads=row.threads,
            runtime=row.runtime,
            provider=row.provider,
            device=row.device,
            load_ms=row.load_ms,
            peak_rss_bytes=row.peak_rss_bytes,
            peak_rss_scope=row.peak_rss_scope,
            images=row.images,
            host=row.host,
            harness_overhead_ms=row.harness_overhead_ms,
            fingerprint=dict(row.fingerprint),
            reference_top1=row.reference_top1,
        )


@dataclass
class BenchReport:
    rows: list[BenchRow]
    title: str
    harness_overhead_ms: float
    flags: dict[int, str] = field(default_factory=dict)  # row index -> why it is not comparable with its peers
    errors: list[str] = field(default_factory=list)  # boards that could not be benched, one line each
    # Board row index -> how its answers differ from the same file's here, on the same images: a file verified on
    # one CPU is not taken as verified on another.
    differences: dict[int, str] = field(default_factory=dict)
