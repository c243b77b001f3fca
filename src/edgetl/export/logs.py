"""Converters print hundreds of lines on the C and Python level; they go to a log file in the run instead."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from edgetl.runtime.quiet import descriptors_sent_to


@contextlib.contextmanager
def output_to(log_path: Path) -> Iterator[None]:
    """Send stdout and stderr, down to the file descriptors, to `log_path` (appended) while the block runs."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", errors="replace") as log, descriptors_sent_to(log.fileno(), (1, 2)):
        # Python-level streams too: under click's CliRunner (or any caller that swapped sys.stdout) a print
        # from Keras' converter ("Saved artifact at ...") would not pass through file descriptor 1.
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            log.flush()
