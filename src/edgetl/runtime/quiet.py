"""Silence what native runtimes print on the C level (LiteRT's "Created TensorFlow Lite XNNPACK delegate")."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Hold file descriptor 2 in a temporary file while the block runs; replay it if the block fails, so a
    crash still explains itself, and drop it otherwise (also on Ctrl-C, which needs no explaining)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        failed = False
        try:
            yield
        except Exception:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                captured.seek(0)
                sys.stderr.write(captured.read().decode("utf-8", "replace"))
