"""Converters print hundreds of lines on the C and Python level; they go to a log file in the run instead."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from edgetl.files import open_log
from edgetl.runtime.quiet import descriptors_sent_to

# A converter error's reason: the first line that mentions "error" and is longer than a bare location or label,
# cut to what a one-line message can carry.
REASON_MIN_CHARS = 20
REASON_MAX_CHARS = 300


@contextlib.contextmanager
def output_to(log_path: Path) -> Iterator[None]:
    """Send stdout and stderr, down to the file descriptors, to `log_path` (appended) while the block runs."""
    with open_log(log_path) as log, descriptors_sent_to(log.fileno(), (1, 2)):
        # Python-level streams too: under click's CliRunner (or any caller that swapped sys.stdout) a print
        # from Keras' converter ("Saved artifact at ...") would not pass through file descriptor 1.
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            log.flush()


def first_line(error: BaseException) -> str:
    """The line of a converter's error that says why, short enough for a one-line message."""
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # TensorFlow's converter errors start with a location line; the reason is the first line mentioning "error".
    for line in lines:
        if "error" in line.lower() and len(line) > REASON_MIN_CHARS:
            return line[:REASON_MAX_CHARS]
    return lines[0][:REASON_MAX_CHARS] if lines else type(error).__name__


def append_trace(log_path: Path, name: str, error: BaseException) -> None:
    import traceback

    with open_log(log_path) as handle:
        handle.write(f"\n--- {name} export failed ---\n")
        handle.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
