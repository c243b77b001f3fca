"""What an export does to keep its memory down between steps: garbage collected and handed back to the system."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager

# glibc's mallopt parameter for the size from which a block is mapped on its own (and unmapped when freed).
M_MMAP_THRESHOLD = -3
# Below the 2-4 MB blocks tf2onnx allocates a weight's temporaries in (an Xception's pointwise kernels are 2.1 MB):
# left in glibc's heap, they make every TFLite conversion after them peak several hundred MB higher. Smaller
# thresholds gain nothing more and map more blocks anew (figures: docs/benchmarks.md, export cost's eighth round).
LARGE_BLOCK_BYTES = 2 * 2**20


def hand_back_large_blocks() -> None:
    """glibc raises its mmap threshold each time a mapped block is freed, and keeps freed blocks below it for
    reuse: the large buffers every conversion, calibration batch and session allocates and frees would keep an
    export's resident memory growing from rung to rung. A fixed threshold gives each large block back to the
    system when it is freed. Elsewhere than glibc, nothing changes."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)


def _glibc():
    """glibc, whose allocator this module tunes; None elsewhere."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def collect_garbage() -> None:
    """The TensorFlow Lite converter and tf2onnx leave their graphs in reference cycles, hundreds of MB, until
    Python's cycle collector happens to run (docs/int8.md). Collected as soon as a conversion is done, they are not
    there when the next one needs memory. The same goes for an engine's model and activations once a file is
    verified.

    What a conversion freed in small blocks stays in glibc's heap, below the size from which blocks are mapped on
    their own (`hand_back_large_blocks`), while the large arrays every later step allocates are mapped anew: that
    memory would count in every later peak. It is handed back to the system too."""
    gc.collect()
    hand_back_freed()


def hand_back_freed() -> None:
    """What was freed in small blocks and stays in glibc's heap, handed back to the system, without a garbage
    collection: after native code that leaves no Python cycles (the TFLite quantiser), where a collection would
    cost a fifth of a second for nothing."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@contextmanager
def settled_objects_frozen() -> Iterator[None]:
    """Inside, the objects alive on entering (TensorFlow's and the converters' modules, the Keras model: some
    400,000) are left out of every garbage collection: each collection then looks at what was made since, the
    converters' graphs it is there for, instead of 0.15-0.2 s over everything (an export collects after each
    conversion and each verification). What is garbage on entering is collected first; what was alive then is
    kept for as long as the export anyway. Where objects are frozen already (by the program edgetl runs in),
    nothing changes."""
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
