"""The class of CPU a figure was measured on, as far as int8 results depend on it.

int8 kernels differ by instruction set, and so can their results: onnxruntime's x86-64 kernels for uint8
activations times int8 weights add pairs of products in 16 bits on a CPU without VNNI (VPMADDUBSW), which saturates
on large values, while VNNI (VPDPBUSD) and ARM's dot products add in 32 bits. Every figure edgetl records names its
class, so a figure from one class is never taken for another's. Reads /proc/cpuinfo only: it runs on boards.
"""

from __future__ import annotations

import platform
from pathlib import Path

X86_VNNI = "x86-64 VNNI"
X86_AVX2 = "x86-64 AVX2 (no VNNI)"
X86_OLDER = "x86-64 without AVX2"
ARM64 = "arm64"
# The instruction sets that add int8 products in 32 bits, as /proc/cpuinfo names them.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
X86_MACHINES = ("x86_64", "amd64")
ARM64_MACHINES = ("aarch64", "arm64")


def _flags(cpuinfo: Path) -> list[str]:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return value.split()
    return []


def cpu_class(cpuinfo: Path = Path("/proc/cpuinfo"), machine: str | None = None) -> str:
    """This CPU's int8 class: X86_VNNI, X86_AVX2, X86_OLDER, ARM64, or the machine's own name for the rest."""
    machine = (machine or platform.machine()).lower()
    if machine in ARM64_MACHINES:
        return ARM64
    if machine not in X86_MACHINES:
        return machine or "unknown"
    flags = _flags(cpuinfo)
    if any(flag in flags for flag in VNNI_FLAGS):
        return X86_VNNI
    return X86_AVX2 if "avx2" in flags else X86_OLDER
