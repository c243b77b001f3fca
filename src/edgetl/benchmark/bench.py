"""`edgetl bench RUN`: the Keras original and every exported file, side by side on the run's test split."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.benchmark.timing import Latency, measure_latency
from edgetl.data.pipeline import decode_subset
from edgetl.errors import DataError
from edgetl.export.verify import predict_in_batches
from edgetl.run import RunDir
from edgetl.runtime.engine import open_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchRow:
    format: str
    path: str
    size_bytes: int
    top1: float
    agreement: float
    latency: Latency
    runtime: str

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "path": self.path,
            "size_bytes": self.size_bytes,
            "top1": self.top1,
            "agreement": self.agreement,
            "latency_ms": self.latency.to_dict(),
            "runtime": self.runtime,
        }


def _keras_predictor(model):
    """A compiled forward pass: what a serving stack runs, not model.predict's per-call overhead."""
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda pixels: forward(tf.constant(pixels, dtype=tf.float32)).numpy()


def bench_run(run_path: Path, runs: int = 100, warmup: int = 10, threads: int | None = None) -> list[BenchRow]:
    run = RunDir(Path(run_path))
    run.require_trained()
    metadata = run.read_metadata()
    split = run.read_split()
    test = decode_subset(split.test, metadata.input_size[0])
    if len(test.labels) == 0:
        raise DataError(f"{split.root}: no test image could be decoded")
    single = test.pixels[:1]

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    model = run.load_model()
    keras_predict = _keras_predictor(model)
    keras_probabilities = predict_in_batches(keras_predict, test.pixels.astype(np.float32))
    keras_predicted = keras_probabilities.argmax(axis=1)
    single_float = single.astype(np.float32)
    rows = [
        BenchRow(
            format="keras",
            path=str(run.model),
            size_bytes=run.model.stat().st_size,
            top1=float(np.mean(keras_predicted == test.labels)),
            agreement=1.0,
            latency=measure_latency(lambda: keras_predict(single_float), runs, warmup),
            runtime=f"tensorflow {tf.__version__}",
        )
    ]
    for record in run.read_exports():
        path = run.path / record["path"]
        if not path.is_file():
            log.warning("%s: listed in %s but missing; skipped", path, run.exports_index.name)
            continue
        engine = open_engine(path, threads=threads)
        probabilities = predict_in_batches(engine.predict, test.pixels)
        predicted = probabilities.argmax(axis=1)
        rows.append(
            BenchRow(
                format=record["format"],
                path=str(path),
                size_bytes=path.stat().st_size,
                top1=float(np.mean(predicted == test.labels)),
                agreement=float(np.mean(predicted == keras_predicted)),
                latency=measure_latency(lambda engine=engine: engine.predict(single), runs, warmup),
                runtime=engine.runtime,
            )
        )
    return rows
