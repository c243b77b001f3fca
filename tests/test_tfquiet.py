"""TensorFlow's start-up chatter (oneDNN notices, "failed call to cuInit" on a CPU) stays off the terminal."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_tensorflow_starts_without_noise_on_stderr():
    code = (
        "from edgetl.tfquiet import import_tensorflow_quietly\n"
        "tf = import_tensorflow_quietly()\n"
        "print(int(tf.reduce_sum(tf.constant([1, 2, 3]))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "6"
    assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr, result.stderr
