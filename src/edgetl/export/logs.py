"""Converters print hundreds of lines on the C and Python level; they go to a log file in the run instead."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def output_to(log_path: Path) -> Iterator[None]:
    """Send stdout and stderr, down to the file descriptors, to `log_path` (appended) while the block runs."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        # Python-level streams too: under click's CliRunner (or any caller that swapped sys.stdout) a print
        # from Keras' converter ("Saved artifact at ...") would not pass through file descriptor 1.
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            log.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
