"""The figures of an exported file in the other programs that run it, recorded beside edgetl's own.

edgetl verifies every file in its runtime's default configuration (LiteRT's interpreter, a plain onnxruntime
session). Some programs also prepare the images their own way: MediaPipe Tasks resizes a photo to the model's size
itself, with its own interpolation, so its answers can differ from those on edgetl's resized pixels. Each such
consumer classifies the verification images as its users hand them over (the photo file, decoded by MediaPipe, at
its own size), and its agreement and top-1 are recorded with the file, so a figure is never claimed for a program
that was not run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from edgetl.exporting.verify import Fidelity
from edgetl.runtime.cpu import cpu_class
from edgetl.runtime.engine import is_available

log = logging.getLogger(__name__)


# Two programs' figures for one file count as the same when they differ by at most one image in this many.
CONSUMER_TOLERANCE = 1 / 200
# A consumer runs single-threaded (MediaPipe: one core over 600 photos), so its photos are shared among child
# processes, one a core and at most this many, where the file is at most CONSUMER_SPLIT_MAX_BYTES: each child holds
# the model and the consumer's runtime (MediaPipe with an Xception's int8 file of 22 MB: 230 MB), all counted in
# the export's peak while they run. A MobileNetV2's files (9 MB float32, 3 MB int8) are shared, an Xception's not.
CONSUMER_CHILDREN = 2
CONSUMER_SPLIT_MAX_BYTES = 16 * 2**20


def measured_where(runtime: str, options: str, fidelity: Fidelity, cpu: str | None = None, host: str = "") -> dict:
    """One entry of a record's `verified_on`: who ran the file, how, on which CPU class (this machine's unless
    `cpu` says) and `host` (a board's user@host; empty: here), and what it gave."""
    return {
        "runtime": runtime,
        "options": options,
        "cpu": cpu or cpu_class(),
        "host": host,
        "images": fidelity.images,
        "agreement": round(fidelity.agreement, 6),
        "top1": None if fidelity.top1 is None else round(fidelity.top1, 6),
        "confident_agreement": None if fidelity.confident_agreement is None else round(fidelity.confident_agreement, 6),
    }


def place_of(where: dict) -> str:
    """A `verified_on` entry's runtime, CPU class and board, as one phrase."""
    return f"{where['runtime']} on {where['cpu']}" + (f" ({where['host']})" if where.get("host") else "")


def _mediapipe_image(mediapipe, path: Path):
    """The photo as a program hands it to MediaPipe: its file as MediaPipe's own `Image.create_from_file` decodes
    it, as its guides and a plain client do (a JPEG decoded otherwise can differ by enough to flip a near tie:
    one of the transfer run's 44 photos on an x86-64 VNNI machine with AMX). A file MediaPipe cannot read is
    decoded by PIL, turned upright and in RGB, at its own size, as is one it reads in other than colour (the
    classifier takes colour only)."""
    try:
        image = mediapipe.Image.create_from_file(str(path))
        if image.image_format in (mediapipe.ImageFormat.SRGB, mediapipe.ImageFormat.SRGBA):
            return image
    except (RuntimeError, ValueError, OSError):
        pass
    return mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=_decoded_photo(path))


def _decoded_photo(path: Path) -> np.ndarray:
    """The photo decoded by PIL, turned upright and in RGB, at its own size."""
    from PIL import Image

    from edgetl.runtime.image import to_rgb

    with Image.open(path) as image:
        image.load()
        return np.ascontiguousarray(np.asarray(to_rgb(image), dtype=np.uint8))


def mediapipe_probabilities(model: Path, photos: list[Path], classes: int) -> np.ndarray:
    """MediaPipe Tasks' ImageClassifier with default options on each photo: (photos, classes) scores, from a child
    process (`in_child_process`)."""
    return in_child_process("mediapipe", model, photos, classes)


def mediapipe_started(model: Path, photos: list[Path], classes: int) -> Running:
    """`mediapipe_probabilities` started, not waited for (`Running.result`)."""
    return Running("mediapipe", model, photos, classes)


def consumer_children(model: Path, photos: int) -> int:
    """How many child processes share a consumer's photos: one a core (at most CONSUMER_CHILDREN), where the file
    is at most CONSUMER_SPLIT_MAX_BYTES, else one."""
    from edgetl.runtime.bounds import cores

    try:
        if model.stat().st_size > CONSUMER_SPLIT_MAX_BYTES:
            return 1
    except OSError:  # the consumer says what is wrong with the file, in its own words
        return 1
    return max(1, min(CONSUMER_CHILDREN, cores(), photos))


def in_child_process(consumer: str, model: Path, photos: list[Path], classes: int) -> np.ndarray:
    """A consumer's scores (`CHILD_RUNS[consumer]`) computed by Python processes of their own, as a program that
    embeds it runs it: its libraries, and what it allocated, go with the process instead of staying in the
    exporter to its end (MediaPipe's: about 100 MB, counted in every later step's peak). The photos are shared
    among `consumer_children` children, in order. A failure raises with a failed child's last line of error."""
    return Running(consumer, model, photos, classes).result()


class Running:
    """A consumer's child processes (`in_child_process`), started and not yet waited for: the exporter starts them
    as soon as a file is written, and they run while its own runtime verifies the file (LiteRT's default
    interpreter runs on one core). `result` waits for their scores; `stop` kills them (the file was not kept, or
    the export was interrupted). The file must stay where it is until one of the two is done."""

    def __init__(self, consumer: str, model: Path, photos: list[Path], classes: int) -> None:
        import json
        import os
        import subprocess
        import sys
        import tempfile

        self.consumer = consumer
        self._work = tempfile.TemporaryDirectory(prefix="edgetl-consumer-")
        work = Path(self._work.name)
        # The child imports this edgetl, wherever it was imported from.
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        # Each child's errors go to a file, not a pipe: nothing reads a pipe while the child runs beside the
        # exporter's own verification, and a full one would stop the child.
        self.running: list[tuple[object, Path, Path]] = []
        shares = np.array_split(np.arange(len(photos)), consumer_children(Path(model), len(photos)))
        try:
            for child, share in enumerate(shares):
                request, scores = work / f"photos-{child}.json", work / f"scores-{child}.npy"
                errors = work / f"errors-{child}.txt"
                request.write_text(json.dumps([str(photos[index]) for index in share]))
                command = [sys.executable, "-m", __name__, consumer, str(model), str(classes)]
                with errors.open("w") as error_file:
                    process = subprocess.Popen(
                        [*command, str(request), str(scores)],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=error_file,
                    )
                self.running.append((process, scores, errors))
        except BaseException:
            self.stop()
            raise

    def result(self) -> np.ndarray:
        """The scores, in the order of the photos; a failure raises with a failed child's last line of error."""
        failure = None
        try:
            for process, _, errors in self.running:
                if process.wait() != 0 and failure is None:
                    lines = errors.read_text(errors="replace").strip().splitlines()
                    failure = lines[-1] if lines else f"{self.consumer} exited with status {process.returncode}"
            if failure is not None:
                raise RuntimeError(failure)
            return np.concatenate([np.load(scores) for _, scores, _ in self.running], axis=0)
        finally:  # interrupted, the exporter leaves no child behind
            self.stop()

    def stop(self) -> None:
        """Kill the children still running, and remove their folder."""
        for process, _, _ in self.running:
            if process.poll() is None:
                process.kill()
            process.wait()
        self._work.cleanup()


def mediapipe_scores(model: Path, photos: list[Path], classes: int) -> np.ndarray:
    """MediaPipe Tasks' ImageClassifier with default options on each photo, in this process."""
    import mediapipe
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)), max_results=-1)
    scores = np.zeros((len(photos), classes), np.float32)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for row, path in enumerate(photos):
            for category in classifier.classify(_mediapipe_image(mediapipe, path)).classifications[0].categories:
                scores[row, category.index] = category.score
    return scores


@dataclass(frozen=True)
class Consumer:
    name: str  # as recorded, with its version
    options: str  # how it was opened and fed
    kinds: frozenset[str]  # the kinds of file it runs (ExportFormat.kind)
    input_dtypes: frozenset[str]
    module: str  # importable where the consumer is installed
    started: Callable[[Path, list[Path], int], Running]  # its scores on the photos, started (`Running.result`)


CONSUMERS = (
    Consumer(
        "mediapipe",
        "ImageClassifier, default options, the photo file as MediaPipe decodes it, at its own size (MediaPipe resizes)",
        frozenset({"tflite"}),
        frozenset({"float32", "uint8"}),
        "mediapipe",
        mediapipe_started,
    ),
)


def consumers_for(kind: str, input_dtype: str) -> list[Consumer]:
    """The consumers installed here that run a file of this kind."""
    return [
        consumer
        for consumer in CONSUMERS
        if kind in consumer.kinds and input_dtype in consumer.input_dtypes and is_available(consumer.module)
    ]


def consumer_label(consumer: Consumer) -> str:
    try:
        return f"{consumer.name} {version(consumer.name)}"
    except PackageNotFoundError:
        return consumer.name


# What `in_child_process` runs in the child, by consumer name.
CHILD_RUNS: dict[str, Callable[[Path, list[Path], int], np.ndarray]] = {"mediapipe": mediapipe_scores}


def _child_main(argv: list[str]) -> None:
    """python -m edgetl.exporting.consumers CONSUMER MODEL CLASSES PHOTOS_JSON SCORES_NPY"""
    import json
    import sys

    consumer, model, classes, request, scores = argv
    # As on a device, without TensorFlow: MediaPipe imports it where it is installed, only for its documentation
    # decorators (mediapipe/tasks/python/core/optional_dependencies.py). Classifying 600 photos with an Xception's
    # int8 file, the child peaks at 230 MB without it, 940 MB with it, and gives the same scores.
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # an import of it raises ModuleNotFoundError
    photos = [Path(photo) for photo in json.loads(Path(request).read_text())]
    np.save(scores, CHILD_RUNS[consumer](Path(model), photos, int(classes)))


if __name__ == "__main__":
    import sys

    _child_main(sys.argv[1:])
