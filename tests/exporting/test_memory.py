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
