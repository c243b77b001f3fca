"""Start TensorFlow without its start-up chatter on the terminal.

TensorFlow prints oneDNN notices on import and, on a machine without a GPU, "failed call to cuInit: CUDA error"
when its eager context starts, through absl before any log level applies (TF_CPP_MIN_LOG_LEVEL does not reach
them). On a CPU that is expected, not an error, so the lines are dropped; if starting fails they are replayed.
"""

from __future__ import annotations

import os
import sys

from edgetl.progress import step
from edgetl.runtime.quiet import native_stderr_captured


def import_tensorflow_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        with step("starting TensorFlow"), native_stderr_captured():
            import keras  # noqa: F401
            import tensorflow

            # MultiWorkerMirroredStrategy must be created before the eager context exists: under TF_CONFIG the
            # context is left for the strategy to start.
            if "TF_CONFIG" not in os.environ:
                tensorflow.config.list_logical_devices()
    return sys.modules["tensorflow"]
