"""--watch: a frame dropped into the folder is classified as it lands; Ctrl-C stops cleanly."""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from edgetl.runtime.watch import new_images


def test_new_images_skips_existing_and_waits_for_whole_files(tmp_path):
    (tmp_path / "old.png").write_bytes(b"old")
    polls = iter(range(100))
    arrivals = []

    def stop() -> bool:
        step = next(polls)
        if step == 1:
            (tmp_path / "new.png").write_bytes(b"12")
            (tmp_path / ".partial.png").write_bytes(b"hidden")  # a copier's temporary name
        if step == 2:
            (tmp_path / "new.png").write_bytes(b"1234")  # still growing: not yet
        return step > 6

    for path in new_images(tmp_path, poll_seconds=0, stop=stop):
        arrivals.append((path.name, path.stat().st_size))
    assert arrivals == [("new.png", 4)]


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)


@pytest.mark.slow
def test_watch_classifies_a_dropped_frame(exported_run, sample_dir, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    model = exported_run / "exports" / "model_int8.tflite"
    process = subprocess.Popen(
        [sys.executable, "-m", "edgetl", "classify", str(model), "--watch", str(inbox), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        # SIGINT handled, as in a terminal: a shell's background job (`make test &`) passes it on ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    stdout, stderr = queue.Queue(), queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, stdout), daemon=True).start()
    threading.Thread(target=_lines, args=(process.stderr, stderr), daemon=True).start()
    try:
        assert "watching" in stderr.get(timeout=60)
        frame = sorted((sample_dir / "three").iterdir())[0]
        staging = inbox / ".frame.tmp"
        shutil.copy(frame, staging)
        os.replace(staging, inbox / "frame_0001.png")
        line = json.loads(stdout.get(timeout=30))
        assert line["file"] == str(inbox / "frame_0001.png")
        assert len(line["top"]) == 3 and line["label"] == line["top"][0]["label"]
        time.sleep(0.5)
        assert stdout.empty()  # the frame is classified once
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    assert code == 0
