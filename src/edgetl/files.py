"""Files and folders written beside their final place and renamed into it, so a crash never leaves half of one."""

from __future__ import annotations

import errno
import os
import secrets
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


def temporary_name(destination: Path) -> Path:
    """A free hidden name beside `destination`, ending in its suffix (engines choose by suffix), to write a file or
    folder under before it is verified and moved into place; nothing is created."""
    destination = Path(destination)
    return destination.with_name(f".{destination.name}.{secrets.token_hex(6)}.tmp{destination.suffix}")


def remove_if_there(path: Path) -> None:
    """Delete a file, a symbolic link (never what it points to) or a folder, if there."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink(missing_ok=True)


def refuse_links(root: Path, *paths: Path) -> None:
    """Refuse to write `paths` when any part of them below `root` (a run directory, or an output folder) is a
    symbolic link: a link planted in a run would make edgetl create, append to or replace a file outside it. The
    root itself may be a link (a run kept on another disk)."""
    root = Path(root)
    for path in paths:
        try:
            parts = Path(path).relative_to(root).parts
        except ValueError:
            continue
        current = root
        for part in parts:
            current = current / part
            if current.is_symlink():
                raise WriteError(
                    f"{current}: is a symbolic link inside {root}; edgetl never writes through one "
                    f"(replace it with a real file or folder)"
                )


def open_no_follow(path: Path, flags: int) -> int:
    """os.open that refuses a symbolic link at `path` (O_NOFOLLOW where the system has it) with a WriteError."""
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP or Path(path).is_symlink():
            raise WriteError(f"{path}: is a symbolic link; edgetl never writes through one (remove it)") from None
        raise WriteError(f"{path}: could not be opened for writing ({error.strerror or error})") from None


def open_log(path: Path):
    """A text file opened for appending, created if missing, never through a symbolic link."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(descriptor, "a", encoding="utf-8", errors="replace")
