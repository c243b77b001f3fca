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


def test_what_was_held_back_is_replayed_on_an_error_but_not_on_ctrl_c():
    code = (
        "import os, sys\n"
        "from edgetl.runtime.quiet import native_stderr_captured\n"
        "for error in (KeyboardInterrupt, RuntimeError):\n"
        "    try:\n"
        "        with native_stderr_captured():\n"
        "            os.write(2, f'native line before {error.__name__}\\n'.encode())\n"
        "            raise error\n"
        "    except BaseException:\n"
        "        pass\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "native line before RuntimeError\n"
