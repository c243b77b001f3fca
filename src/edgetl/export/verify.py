"""Compare an exported model's predictions with the Keras original's on the same images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Fidelity:
    images: int
    agreement: float  # share of images whose top-1 class equals Keras'
    top1: float  # accuracy of the exported model
    keras_top1: float
    max_probability_diff: float
    flipped: list[int]  # indices of images whose top-1 changed
    per_class_accuracy_change: dict[str, float] = field(default_factory=dict)  # export minus Keras, per class


def predict_in_batches(predict, pixels: np.ndarray, batch_size: int = 32) -> np.ndarray:
    outputs = [predict(pixels[start : start + batch_size]) for start in range(0, len(pixels), batch_size)]
    return np.concatenate(outputs, axis=0)


def compare(
    probabilities: np.ndarray,
    keras_probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | None = None,
) -> Fidelity:
    predicted = probabilities.argmax(axis=1)
    keras_predicted = keras_probabilities.argmax(axis=1)
    flipped = np.flatnonzero(predicted != keras_predicted)
    per_class = {}
    for label, name in enumerate(class_names or []):
        members = labels == label
        if members.any():
            change = np.mean(predicted[members] == label) - np.mean(keras_predicted[members] == label)
            per_class[name] = round(float(change), 6)
    return Fidelity(
        images=len(labels),
        agreement=float(np.mean(predicted == keras_predicted)),
        top1=float(np.mean(predicted == labels)),
        keras_top1=float(np.mean(keras_predicted == labels)),
        max_probability_diff=float(np.max(np.abs(probabilities - keras_probabilities))),
        flipped=[int(i) for i in flipped],
        per_class_accuracy_change=per_class,
    )
