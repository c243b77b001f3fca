"""Files and folders written beside their final place and renamed into it, so a crash never leaves half of one."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgetl.errors import WriteError


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file.

    A full disk or a folder without write permission raises a WriteError naming `path`; the old file, if any, is
    left as it was and the temporary file is removed.
    """
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from other users
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        reason = "no space left: the disk is full" if error.errno == errno.ENOSPC else error.strerror or str(error)
        raise WriteError(f"{path}: could not be written ({reason}); nothing was changed") from None
    except BaseException:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def temporary_sibling(path: Path) -> Path:
    """A free name beside `path` for tools that insist on writing a file themselves (Keras' save)."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(descriptor)
    os.chmod(temporary, 0o666 & ~_umask())  # the tool keeps mkstemp's 0600, which would hide the file from others
    return Path(temporary)


@contextmanager
def staged_folder(destination: Path) -> Iterator[Path]:
    """An empty folder to fill beside `destination`, swapped in when the block ends without an error: a crash never
    leaves half a folder, and what was at `destination` stays until the new folder is complete."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent))
    try:
        built = staging / "new"
        built.mkdir()
        yield built
        if destination.exists():
            os.replace(destination, staging / "previous")
        os.replace(built, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
