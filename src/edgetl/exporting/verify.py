"""Compare an exported model's predictions with the Keras original's on the same images (NumPy only: the
device-side bench uses it on boards)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# The label of an image whose class is not known (a plain folder of calibration images): agreement with Keras
# and the probability error are measured on it, accuracy is not.
UNLABELLED = -1
# Keras' top probability from which a prediction counts as confident. Flips among near-uniform outputs (an
# image of something the model was not trained on) say little; flips of confident predictions are what users see.
CONFIDENT_PROBABILITY = 0.5
# Classes recorded per flipped image, for Keras and the file: what a reader needs to judge the flip.
FLIPPED_TOP_K = 3
# Images a runtime (LiteRT, onnxruntime) runs at once while an export verifies or ranks: one, unless its file kind
# allows more (written.FileKind.batch). A session's memory arena grows to what its largest batch needed and keeps
# it while the session lives, which grows with every image a call holds (on an Xception at 299 px, 8 images a call
# took 550 MB more than one), and LiteRT's results move in their last bit with the batch.
RUNTIME_BATCH = 1
# Where a file kind allows larger batches, a batch holds at most this much of the Keras model's layer outputs for
# its images (keras_passes.activation_bytes, far more than a runtime's arena keeps of them): a MobileNetV2's four
# images at 224 px (84 MB each), an Xception's one at 299 px (242 MB).
RUNTIME_BATCH_BYTES = 384 * 2**20


@dataclass(frozen=True)
class Fidelity:
    images: int
    agreement: float  # share of images whose top-1 class equals Keras'
    top1: float | None  # accuracy of the exported model; None when no image has a label
    keras_top1: float | None
    max_probability_diff: float
    flipped: list[int]  # indices of images whose top-1 changed
    per_class_accuracy_change: dict[str, float] = field(default_factory=dict)  # export minus Keras, per class
    confident_images: int = 0  # images on which Keras' top probability is at least CONFIDENT_PROBABILITY
    confident_agreement: float | None = None  # agreement on those; None when there are none
    mean_probability_diff: float = 0.0  # per image the largest probability difference, averaged
    # per flipped image (in `flipped` order), Keras' and the file's top classes as (class index, probability)
    flipped_keras_top: list[list[tuple[int, float]]] = field(default_factory=list)
    flipped_export_top: list[list[tuple[int, float]]] = field(default_factory=list)


def top_classes(probabilities: np.ndarray, k: int = FLIPPED_TOP_K) -> list[tuple[int, float]]:
    """The `k` most probable classes of one image's probabilities, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(index), round(float(probabilities[index]), 6)) for index in order]


def predict_in_batches(predict, pixels: np.ndarray, batch_size: int = RUNTIME_BATCH) -> np.ndarray:
    outputs = [predict(pixels[start : start + batch_size]) for start in range(0, len(pixels), batch_size)]
    return np.concatenate(outputs, axis=0)


def verification_order(keras_probabilities: np.ndarray) -> np.ndarray:
    """The order an int8 attempt's images are run in when it may stop as soon as its outcome is decided: the images
    Keras is confident about first, then the rest, each group by the margin between Keras' two most probable
    classes, smallest first. The confident images are the fewest and decide most climbs (one flip among them can
    end an attempt), and the images Keras is least sure of are the ones a file flips first."""
    ranked = np.sort(keras_probabilities, axis=1)
    margin = ranked[:, -1] - ranked[:, -2] if ranked.shape[1] > 1 else np.zeros(len(ranked), ranked.dtype)
    confident = keras_probabilities.max(axis=1) >= CONFIDENT_PROBABILITY
    return np.lexsort((margin, ~confident))  # stable: equal margins keep the images' own order


class OrderedRun:
    """A file's predictions on the verification images, made in `order`, `batch` images a call, which may stop
    before the last (`go_on`) and go on later where it stopped, in another session of the same file: each image's
    prediction is its own, whatever was run before it. Given Keras' predictions, `flips` counts the images whose
    top-1 differs from Keras', and `confident_flips` those among the `confident_images` Keras is confident about, as
    far as they were run."""

    def __init__(
        self, order: np.ndarray, keras_probabilities: np.ndarray | None = None, batch: int = RUNTIME_BATCH
    ) -> None:
        self.order = np.asarray(order)
        self.batch = batch
        self.done = 0
        self.flips = self.confident_flips = 0
        self.probabilities: np.ndarray | None = None
        self.keras_top = self.confident = None
        self.confident_images = 0
        if keras_probabilities is not None:
            self.keras_top = keras_probabilities.argmax(axis=1)
            self.confident = keras_probabilities.max(axis=1) >= CONFIDENT_PROBABILITY
            self.confident_images = int(self.confident.sum())

    @classmethod
    def in_order(cls, images: int, batch: int = RUNTIME_BATCH) -> OrderedRun:
        return cls(np.arange(images), batch=batch)

    @property
    def complete(self) -> bool:
        return self.done == len(self.order)

    @property
    def positions(self) -> np.ndarray:
        """The positions of the images run so far, in the images' own order."""
        return np.sort(self.order[: self.done])

    def go_on(self, predict, pixels, stop=None) -> None:
        """Run the images not yet run, in order, a batch a call, until all are, or `stop(self)` says after a batch
        that the rest are not needed."""
        while not self.complete:
            positions = self.order[self.done : self.done + self.batch]
            first = int(positions[0])
            contiguous = bool(np.all(np.diff(positions) == 1))  # read as a slice: one read, no copy of an index
            outputs = predict(pixels[first : first + len(positions)] if contiguous else pixels[positions])
            if self.probabilities is None:
                self.probabilities = np.zeros((len(self.order), *outputs.shape[1:]), outputs.dtype)
            self.probabilities[positions] = outputs
            self.done += len(positions)
            if self.keras_top is not None:
                flipped = outputs.argmax(axis=1) != self.keras_top[positions]
                self.flips += int(flipped.sum())
                self.confident_flips += int((flipped & self.confident[positions]).sum())
            if stop is not None and stop(self):
                return


def fidelity(probabilities: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Top-1 agreement with the reference probabilities and the largest absolute probability difference: the two
    figures a bench row carries (`compare` gives the export's full account)."""
    agreement = float(np.mean(probabilities.argmax(axis=1) == reference.argmax(axis=1)))
    return agreement, float(np.max(np.abs(probabilities - reference)))


def compare_run(
    run: OrderedRun, keras_probabilities: np.ndarray, labels: np.ndarray, class_names: list[str] | None = None
) -> Fidelity:
    """`compare` over the images `run` ran (every image, once it is complete); flipped images are named by their
    positions among all."""
    positions = run.positions
    fidelity = compare(run.probabilities[positions], keras_probabilities[positions], labels[positions], class_names)
    return replace(fidelity, flipped=[int(positions[i]) for i in fidelity.flipped])


def _share(hits: np.ndarray) -> float | None:
    return float(np.mean(hits)) if hits.size else None


def compare(
    probabilities: np.ndarray,
    keras_probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | None = None,
) -> Fidelity:
    predicted = probabilities.argmax(axis=1)
    keras_predicted = keras_probabilities.argmax(axis=1)
    agree = predicted == keras_predicted
    labelled = labels != UNLABELLED
    confident = keras_probabilities.max(axis=1) >= CONFIDENT_PROBABILITY
    per_class = {}
    for label, name in enumerate(class_names or []):
        members = labels == label
        if members.any():
            change = np.mean(predicted[members] == label) - np.mean(keras_predicted[members] == label)
            per_class[name] = round(float(change), 6)
    difference = np.abs(probabilities - keras_probabilities).max(axis=1)
    flipped = np.flatnonzero(~agree)
    return Fidelity(
        images=len(labels),
        agreement=float(np.mean(agree)),
        top1=_share(predicted[labelled] == labels[labelled]),
        keras_top1=_share(keras_predicted[labelled] == labels[labelled]),
        max_probability_diff=float(difference.max()),
        flipped=[int(i) for i in flipped],
        per_class_accuracy_change=per_class,
        confident_images=int(confident.sum()),
        confident_agreement=_share(agree[confident]),
        mean_probability_diff=float(difference.mean()),
        flipped_keras_top=[top_classes(keras_probabilities[i]) for i in flipped],
        flipped_export_top=[top_classes(probabilities[i]) for i in flipped],
    )
