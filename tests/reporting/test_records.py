"""What the page reads that train and export now write: the top classes of flipped images (verify.compare) and
Keras' test predictions (train's report); NumPy only."""

from __future__ import annotations

import json

import numpy as np

from edgetl.exporting.verify import compare, top_classes
from edgetl.training.reports import predictions_json


def test_compare_keeps_keras_and_the_files_top3_of_each_flipped_image():
    keras = np.array([[0.7, 0.2, 0.1, 0.0], [0.1, 0.6, 0.3, 0.0], [0.25, 0.25, 0.4, 0.1]])
    exported = np.array([[0.6, 0.3, 0.1, 0.0], [0.1, 0.3, 0.55, 0.05], [0.3, 0.2, 0.1, 0.4]])
    fidelity = compare(exported, keras, np.array([0, 1, 2]), ["a", "b", "c", "d"])
    assert fidelity.flipped == [1, 2]
    assert fidelity.flipped_keras_top == [[(1, 0.6), (2, 0.3), (0, 0.1)], [(2, 0.4), (0, 0.25), (1, 0.25)]]
    assert fidelity.flipped_export_top == [[(2, 0.55), (1, 0.3), (0, 0.1)], [(3, 0.4), (0, 0.3), (1, 0.2)]]


def test_top_classes_with_fewer_classes_than_k():
    assert top_classes(np.array([0.3, 0.7])) == [(1, 0.7), (0, 0.3)]


def test_test_predictions_json_names_classes_and_orders_the_top():
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    document = json.loads(predictions_json(["x.png", "y.png"], np.array([1, 2]), probabilities, ["a", "b", "c"]))
    assert document == {
        "class_names": ["a", "b", "c"],
        "images": [
            {"file": "x.png", "label": "b", "top": [["b", 0.7], ["c", 0.2], ["a", 0.1]]},
            {"file": "y.png", "label": "c", "top": [["a", 0.5], ["b", 0.3], ["c", 0.2]]},
        ],
    }
