"""One candidate's untrained file timed on the emulated aarch64 board over SSH, as `edgetl tune --remote` does."""

from __future__ import annotations

import pytest

from edgetl.benchmark.settings import SshSettings
from edgetl.runtime.cpu import ARM64, cpu_class
from edgetl.tuning.result import Constraints
from tests.arm import board as arm

pytestmark = [pytest.mark.slow, pytest.mark.arm]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    started = arm.start_or_skip(tmp_path_factory.mktemp("board"))
    yield started
    started.stop()


def test_a_candidate_is_timed_here_and_on_the_board_and_the_budget_holds_on_each(board, make_digits, tmp_path):
    from edgetl.data.layouts import read_dataset
    from edgetl.data.options import LayoutOptions
    from edgetl.tuning.probe import build_untrained_file, probe_data, time_file
    from edgetl.tuning.space import Candidate

    split = read_dataset(str(make_digits(3)), "auto", LayoutOptions()).split
    data = probe_data(split, tmp_path)
    path = build_untrained_file(Candidate("mobilenetv2", 0.35, 32), data, "tflite-int8", tmp_path / "probe")
    ssh = SshSettings(
        options=(
            f"Port={board.port}", f"IdentityFile={board.user_key}", f"UserKnownHostsFile={board.known_hosts}",
            "IdentitiesOnly=yes", "StrictHostKeyChecking=yes",
        )
    )  # fmt: skip
    here, there = time_file(path, data, 1, [board.target], ssh)
    assert (here.host, here.cpu) == ("local", cpu_class())
    assert (there.host, there.cpu) == (board.target, ARM64)
    assert here.size_bytes == there.size_bytes == path.stat().st_size
    print(f"untrained int8 p50: here {here.p50_ms:.3f} ms, emulated board {there.p50_ms:.3f} ms")
    # A budget between the two figures fails on the board alone, and says where.
    between = Constraints(max_latency_ms=(here.p50_ms + there.p50_ms) / 2)
    slower = there if there.p50_ms > here.p50_ms else here
    (reason,) = between.violations([here, there])
    assert reason.endswith(f"on {slower.place}")
