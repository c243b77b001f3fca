"""edgetl/files.py: a file is written beside its place and renamed into it, so readers see the old file or the new
one, never half of one, and a failure leaves nothing behind."""

import os
import stat

import pytest

from edgetl.errors import WriteError
from edgetl.files import atomic_write


def test_atomic_write_writes_text_and_bytes_and_makes_the_folder(tmp_path):
    atomic_write(tmp_path / "a" / "b" / "labels.txt", "cat\ndog\n")
    atomic_write(tmp_path / "model.bin", b"\x00\xff")
    assert (tmp_path / "a" / "b" / "labels.txt").read_bytes() == b"cat\ndog\n"
    assert (tmp_path / "model.bin").read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "model.bin"]


def test_atomic_write_replaces_an_old_file_and_follows_the_umask(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old and longer than the new content")
    previous = os.umask(0o027)
    try:
        atomic_write(target, "new")
    finally:
        os.umask(previous)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_failed_rename_leaves_the_destination_as_it_was_and_no_temporary_file(tmp_path):
    target = tmp_path / "exports"
    target.mkdir()  # a folder where the file should go: the rename fails
    (target / "kept.txt").write_text("kept")
    with pytest.raises(WriteError, match=f"^{target}: could not be written .*nothing was changed$"):
        atomic_write(target, "content")
    assert (target / "kept.txt").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["exports"]


def test_a_folder_that_cannot_be_made_is_a_write_error_naming_the_file(tmp_path):
    blocker = tmp_path / "run"
    blocker.write_text("a file where the run folder should be")
    with pytest.raises(WriteError, match="run/metrics.json: could not be written"):
        atomic_write(blocker / "metrics.json", "{}")
    assert blocker.read_text() == "a file where the run folder should be"
