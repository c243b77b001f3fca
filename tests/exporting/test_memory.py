"""How an export keeps glibc's heap from holding what it freed (exporting/memory.py)."""

import platform
import subprocess
import sys

import pytest

from edgetl.exporting import memory

# Run in a fresh interpreter: glibc maps a block on its own only when its heap has no free room for it, and a test
# process that has run others has plenty. Prints the sizes of the anonymous mappings the block added.
CHILD = """
from edgetl.exporting import memory

def anonymous():
    found = {}
    for line in open("/proc/self/maps"):
        fields = line.split()
        if len(fields) == 5:  # no path: anonymous
            start, end = (int(address, 16) for address in fields[0].split("-"))
            found[fields[0]] = end - start
    return found

memory.hand_back_large_blocks()
before = anonymous()
block = bytearray(3 * 2**20)
print(*[size for start, size in anonymous().items() if before.get(start) != size])
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's allocator on Linux only"
)
def test_a_block_of_the_size_tf2onnx_leaves_in_the_heap_is_mapped_on_its_own():
    """A 3 MB block, below the 4 MB a fixed threshold had, gets a mapping of its own, given back to the system when
    freed, instead of growing the heap: left there, such blocks made every later TFLite conversion peak 300-400 MB
    higher."""
    assert memory.LARGE_BLOCK_BYTES < 3 * 2**20
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    assert any(int(size) >= 3 * 2**20 for size in done.stdout.split()), done.stdout


class _Node:
    """An object that can be in a reference cycle and be watched (weakref) until the collector frees it."""

    def __init__(self) -> None:
        self.other = self


def _cycle():
    import weakref

    node = _Node()
    return weakref.ref(node)


def test_objects_alive_on_entering_are_left_out_of_collections_and_garbage_is_still_collected():
    """An export's collections look only at what was made since it started (each cost 0.15-0.2 s over TensorFlow's
    400,000 objects, 35 times an export): cycles dropped before entering are collected on entering, not frozen
    with the rest; cycles made and dropped inside are still collected; on leaving nothing stays frozen."""
    import gc

    assert gc.get_freeze_count() == 0
    before = _cycle()  # a dropped cycle: garbage on entering
    alive = [_Node()]
    with memory.settled_objects_frozen():
        assert before() is None  # collected, not frozen
        assert gc.get_freeze_count() >= len(alive)
        inside = _cycle()
        assert inside() is not None  # only a collection frees a cycle
        memory.collect_garbage()
        assert inside() is None
    assert gc.get_freeze_count() == 0


def test_objects_a_program_froze_itself_stay_frozen():
    """A program that runs edgetl and froze its own objects keeps them frozen after an export."""
    import gc

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with memory.settled_objects_frozen():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
