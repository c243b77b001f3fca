"""The public API called as a user calls it, for the type checker (`make lint` runs pyright on it; pytest never
collects or runs it): the entry points are plain functions, so pyright, help() and a notebook's completion see
their parameters and what they return."""

from __future__ import annotations

from pathlib import Path

import edgetl


def five_minute_tour(data: Path, out: Path) -> str:
    counts: dict[str, int] = edgetl.sample_data(data, per_class=10)
    trained = edgetl.train(data, out, epochs=3, weights="none", seed=1, flip="none")
    accuracy: float = trained.test_accuracy
    trained = edgetl.resume(out, verbose=False)
    exported = edgetl.export(trained.run.path, ["tflite-int8", "onnx"], int8=True, calibration_samples=100)
    problems: list[str] = exported.problems
    report = edgetl.bench(trained.run.path, threads=[1, 2], runs=50)
    errors: list[str] = report.errors
    page: Path = edgetl.report(trained.run.path).path
    classifier = edgetl.Classifier(exported.root / "exports" / "model_int8.tflite")
    label = classifier.classify(["photo.jpg"])[0].label
    return f"{sum(counts.values())} {accuracy} {problems} {errors} {page} {label}"


def tune_for_a_board(data: Path, out: Path) -> str:
    found = edgetl.tune(
        data, out, max_latency_ms=30, max_size_mb=4, space="backbone=mobilenetv2;size=96", weights="none", seed=1
    )
    found = edgetl.tune(None, out, resume=True)
    winner: Path | None = found.winner_run
    lines: list[str] = found.summary()
    return f"{winner} {found.state.seconds} {found.plot} {lines}"
