"""Silence what native runtimes print on the C level (LiteRT's "Created TensorFlow Lite XNNPACK delegate")."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def descriptors_sent_to(target: int, descriptors: tuple[int, ...]) -> Iterator[None]:
    """Point the file `descriptors` (1: stdout, 2: stderr) at the open file descriptor `target` while the block
    runs, so what native code prints lands there too; Python's streams are flushed on the way in and out, so
    nothing printed before or after lands in the wrong place."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(descriptor) for descriptor in descriptors]
    for descriptor in descriptors:
        os.dup2(target, descriptor)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for descriptor, original in zip(descriptors, saved, strict=True):
            os.dup2(original, descriptor)
            os.close(original)


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Hold file descriptor 2 in a temporary file while the block runs; replay it if the block fails, so a
    crash still explains itself, and drop it otherwise (also on Ctrl-C, which needs no explaining)."""
    with tempfile.TemporaryFile() as captured:
        try:
            with descriptors_sent_to(captured.fileno(), (2,)):
                yield
        except Exception:
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
