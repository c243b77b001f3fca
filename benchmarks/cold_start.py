"""Cold start and throughput of `edgetl classify`, measured in one run.

Cold start = a fresh process that imports, loads the model and classifies one image: edgetl classify (LiteRT or
onnxruntime, no TensorFlow) against the same job done through TensorFlow (tf.lite.Interpreter, and Keras).
Throughput = images per second over the run's test images, in-process, after the model is loaded.

    python benchmarks/cold_start.py [RUN]     (RUN defaults to demo-out/run: `make demo` makes it)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 5

THROUGH_TENSORFLOW = """
import sys, numpy as np
from PIL import Image
import tensorflow as tf
interpreter = tf.lite.Interpreter(model_path=sys.argv[1])
interpreter.allocate_tensors()
detail = interpreter.get_input_details()[0]
size = tuple(detail["shape"][1:3])
pixels = np.asarray(Image.open(sys.argv[2]).convert("RGB").resize(size[::-1]), np.float32)[None]
scale, zero = detail["quantization"]
if scale:
    pixels = np.clip(np.round(pixels / scale + zero), -128, 127)
interpreter.set_tensor(detail["index"], pixels.astype(detail["dtype"]))
interpreter.invoke()
print(int(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).argmax()))
"""

THROUGH_KERAS = """
import sys, numpy as np
from PIL import Image
import keras
model = keras.saving.load_model(sys.argv[1])
size = model.input_shape[1:3]
pixels = np.asarray(Image.open(sys.argv[2]).convert("RGB").resize(size[::-1]), np.float32)[None]
print(int(model.predict(pixels, verbose=0).argmax()))
"""


def median_seconds(command: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(model: Path, images: list[Path], batch_size: int) -> float:
    from edgetl.runtime.classify import classify_stream
    from edgetl.runtime.engine import open_engine

    engine = open_engine(model)
    list(classify_stream(engine, images[:batch_size], batch_size=batch_size))  # warm-up
    start = time.perf_counter()
    results = list(classify_stream(engine, images, batch_size=batch_size))
    elapsed = time.perf_counter() - start
    assert not any(r.error for r in results)
    return len(results) / elapsed


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out/run")
    if not (run / "exports.json").is_file():
        sys.exit(f"{run}: no exported run here; run `make demo` first or pass a run directory")
    split = json.loads((run / "split.json").read_text())
    images = [Path(split["root"]) / relative for relative, _ in split["test"]]
    int8 = run / "exports" / "model_int8.tflite"
    python = sys.executable
    print(f"cold start: median of {REPEATS} fresh processes, import + load + one image ({images[0].name})")
    edgetl_int8 = median_seconds([python, "-m", "edgetl", "classify", str(int8), str(images[0])])
    onnx = run / "exports" / "model.onnx"
    edgetl_onnx = median_seconds([python, "-m", "edgetl", "classify", str(onnx), str(images[0])])
    tf_int8 = median_seconds([python, "-c", THROUGH_TENSORFLOW, str(int8), str(images[0])])
    keras = median_seconds([python, "-c", THROUGH_KERAS, str(run / "model.keras"), str(images[0])])
    print(f"  edgetl classify, int8 TFLite on LiteRT     {edgetl_int8 * 1000:8.0f} ms")
    print(f"  edgetl classify, ONNX on onnxruntime       {edgetl_onnx * 1000:8.0f} ms")
    print(f"  the same int8 file via tf.lite.Interpreter {tf_int8 * 1000:8.0f} ms")
    print(f"  the Keras model via keras + predict        {keras * 1000:8.0f} ms")
    print(f"  ratio TensorFlow interpreter / edgetl      {tf_int8 / edgetl_int8:8.1f}x   (target >= 5x)")
    print(f"  ratio Keras / edgetl                       {keras / edgetl_int8:8.1f}x")
    print(f"throughput over {len(images)} test images, in-process after loading:")
    for filename in ("model_int8.tflite", "model_float32.tflite", "model.onnx"):
        for batch_size in (1, 16):
            rate = throughput(run / "exports" / filename, images, batch_size)
            print(f"  {filename:<22} batch {batch_size:>2}  {rate:8.0f} images/s")


if __name__ == "__main__":
    main()
