"""RUN/report/: the classification report (JSON and text), the confusion matrix, the training curves of both
stages and a grid of test images with their true and predicted labels. Matplotlib draws off-screen (Agg)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.files import atomic_write

GRID_IMAGES = 25
CLASSIFICATION_REPORT = "classification_report.json"
# Keras' top classes of every test image, for `edgetl report` (its confusion matrix and the images Keras gets wrong).
TEST_PREDICTIONS = "test_predictions.json"
TEST_PREDICTIONS_TOP_K = 3


@dataclass(frozen=True)
class ReportFiles:
    folder: Path
    macro_f1: float
    weighted_f1: float


def classification_report(true: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> tuple[dict, str]:
    from sklearn.metrics import classification_report as sklearn_report

    labels = list(range(len(class_names)))
    arguments = {"labels": labels, "target_names": class_names, "zero_division": 0}
    as_dict = sklearn_report(true, predicted, output_dict=True, **arguments)
    as_text = sklearn_report(true, predicted, digits=4, **arguments)
    return as_dict, as_text


def _png(figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def confusion_matrix_png(true: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> bytes:
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(true, predicted, labels=list(range(len(class_names))))
    side = max(4.0, 0.5 * len(class_names) + 2)
    figure = Figure(figsize=(side, side))
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=90)
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(class_names) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for row in range(matrix.shape[0]):
            for column in range(matrix.shape[1]):
                colour = "white" if matrix[row, column] > threshold else "black"
                axes.text(column, row, str(matrix[row, column]), ha="center", va="center", color=colour, fontsize=8)
    axes.set_title("confusion matrix (test)")
    return _png(figure)


def training_curves_png(history: dict[str, dict[str, list[float]]]) -> bytes:
    """Loss and accuracy per epoch, stage 2 continuing stage 1's epoch axis after a dashed line."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    for position, metric in enumerate(("loss", "accuracy"), start=1):
        axes = figure.add_subplot(1, 2, position)
        offset = 0
        for stage, rows in history.items():
            epochs = len(rows.get(metric, []))
            if not epochs:
                continue
            x = np.arange(offset + 1, offset + epochs + 1)
            axes.plot(x, rows[metric], marker=".", label=f"{stage} train")
            if f"val_{metric}" in rows:
                axes.plot(x, rows[f"val_{metric}"], marker=".", label=f"{stage} validation")
            if offset:
                axes.axvline(offset + 0.5, color="grey", linestyle="--")
            offset += epochs
        axes.set_xlabel("epoch")
        axes.set_title(metric)
        axes.legend(fontsize=8)
    return _png(figure)


def prediction_grid_png(read_pixels, true: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> bytes:
    from matplotlib.figure import Figure

    # Mistakes first: they are what a reader looks at the grid for.
    order = np.concatenate([np.flatnonzero(true != predicted), np.flatnonzero(true == predicted)])[:GRID_IMAGES]
    # Only the shown images are read: the test set may be streamed from files.
    pixels, true, predicted = read_pixels(order), true[order], predicted[order]
    count = len(order)
    columns = min(5, max(1, count))
    rows = max(1, -(-count // columns))
    figure = Figure(figsize=(2.2 * columns, 2.4 * rows))
    for index in range(count):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(pixels[index].astype(np.uint8))
        axes.axis("off")
        right = true[index] == predicted[index]
        axes.set_title(
            f"true {class_names[true[index]]}\npred {class_names[predicted[index]]}",
            fontsize=8,
            color="green" if right else "red",
        )
    return _png(figure)


def predictions_json(files: list[str], true: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> str:
    """Each test image's file, true class and Keras' top classes with their probabilities, by class name."""
    k = min(TEST_PREDICTIONS_TOP_K, len(class_names))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    images = [
        {
            "file": file,
            "label": class_names[int(label)],
            "top": [[class_names[int(c)], round(float(row[c]), 6)] for c in classes],
        }
        for file, label, row, classes in zip(files, true, probabilities, order, strict=True)
    ]
    return json.dumps({"class_names": class_names, "images": images}, indent=0)


def write_reports(
    folder: Path,
    read_pixels,  # indices -> (n, height, width, 3) uint8 test images
    true: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    history: dict[str, dict[str, list[float]]],
    files: list[str] | None = None,  # the test images' paths, in the order of `true`
) -> ReportFiles:
    predicted = probabilities.argmax(axis=1)
    as_dict, as_text = classification_report(true, predicted, class_names)
    atomic_write(folder / CLASSIFICATION_REPORT, json.dumps(as_dict, indent=1))
    if files:
        atomic_write(folder / TEST_PREDICTIONS, predictions_json(files, true, probabilities, class_names))
    atomic_write(folder / "classification_report.txt", as_text)
    atomic_write(folder / "confusion_matrix.png", confusion_matrix_png(true, predicted, class_names))
    atomic_write(folder / "training_curves.png", training_curves_png(history))
    atomic_write(folder / "test_predictions.png", prediction_grid_png(read_pixels, true, predicted, class_names))
    return ReportFiles(folder, as_dict["macro avg"]["f1-score"], as_dict["weighted avg"]["f1-score"])
