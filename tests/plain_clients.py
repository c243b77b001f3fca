"""Programs that know nothing of edgetl, run in a fresh Python process: the runtime's own API with its defaults
(onnxruntime, LiteRT) and MediaPipe Tasks as its documentation shows it. The tests and benchmarks hold edgetl's
records to what these give."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

# A program that knows nothing of edgetl: the runtime's own API with its defaults, pixels as the file's input
# details say (an int8 TFLite file's uint8 input takes raw pixels: scale 1, zero point 0).
PLAIN_CLIENT = """
import sys
import numpy as np

model, pixels_file, out = sys.argv[1:]
pixels = np.load(pixels_file)
rows = []
if model.endswith(".onnx"):
    import onnxruntime
    session = onnxruntime.InferenceSession(model)
    name = session.get_inputs()[0].name
    rows = [session.run(None, {name: pixels[i : i + 1]})[0] for i in range(len(pixels))]
else:
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=model)
    interpreter.allocate_tensors()
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for i in range(len(pixels)):
        x = pixels[i : i + 1]
        if np.issubdtype(given["dtype"], np.integer):
            scale, zero = given["quantization"]
            info = np.iinfo(given["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        interpreter.set_tensor(given["index"], x.astype(given["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(taken["index"]).astype(np.float32)
        if np.issubdtype(taken["dtype"], np.integer):
            scale, zero = taken["quantization"]
            y = (y - zero) * scale
        rows.append(y)
np.save(out, np.concatenate(rows))
"""

# MediaPipe Tasks as its documentation shows it: default options, the photo as decoded, MediaPipe resizes.
MEDIAPIPE_CLIENT = """
import json, sys
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

model, photos_file, classes, out = sys.argv[1:]
options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=-1)
photos = json.loads(open(photos_file).read())
scores = np.zeros((len(photos), int(classes)), np.float32)
with vision.ImageClassifier.create_from_options(options) as classifier:
    for row, photo in enumerate(photos):
        for category in classifier.classify(mp.Image.create_from_file(photo)).classifications[0].categories:
            scores[row, category.index] = category.score
np.save(out, scores)
"""


def in_fresh_process(code: str, *args, prefix: tuple[str, ...] = ()) -> None:
    result = subprocess.run(
        [*prefix, sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])


def plain_probabilities(model: Path, pixels: np.ndarray, work: Path, prefix: tuple[str, ...] = ()) -> np.ndarray:
    """The file's probabilities on `pixels` in a plain default session of its runtime, in a fresh process (under
    `prefix`, e.g. an emulator, when given)."""
    np.save(work / "pixels.npy", pixels.astype(np.float32))
    in_fresh_process(PLAIN_CLIENT, model, work / "pixels.npy", work / "plain.npy", prefix=prefix)
    return np.load(work / "plain.npy")


def mediapipe_probabilities(model: Path, photos: list[Path], classes: int, work: Path) -> np.ndarray:
    """MediaPipe's ImageClassifier with default options on each photo as it is, in a fresh process."""
    (work / "photos.json").write_text(json.dumps([str(photo) for photo in photos]))
    in_fresh_process(MEDIAPIPE_CLIENT, model, work / "photos.json", classes, work / "mediapipe.npy")
    return np.load(work / "mediapipe.npy")
