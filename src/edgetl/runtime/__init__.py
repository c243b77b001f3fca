"""On-device inference: numpy, pillow and a light runtime (LiteRT or onnxruntime). Never TensorFlow."""
