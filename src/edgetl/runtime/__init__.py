"""On-device inference: numpy, pillow and a light runtime (LiteRT, tflite-runtime or onnxruntime); nothing here
imports TensorFlow at module level, so a board without it runs every module.

The one exception, on purpose: a .tflite file on a workstation that has no light TFLite runtime but has TensorFlow
(the train extra) runs on TensorFlow's own interpreter (`--runtime tensorflow`, runtime/litert.py), imported only
when neither light runtime can be. The registry marks it `light=False`, so the device bench and a board never ask
for it (runtime/runtimes.py).
"""
