"""The CPU class every figure names, read from /proc/cpuinfo as it reads on each kind of machine."""

import pytest

from edgetl.runtime.cpu import ARM64, X86_AVX2, X86_OLDER, X86_VNNI, cpu_class


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("fpu sse2 avx avx2 fma avx512f avx512_vnni", X86_VNNI),  # Cascade Lake and later, Zen 4
        ("fpu sse2 avx avx2 fma avx_vnni", X86_VNNI),  # Alder Lake
        ("fpu sse2 avx avx2 fma", X86_AVX2),  # Haswell to Zen 3: 16-bit pair sums
        ("fpu sse2 sse4_2", X86_OLDER),
    ],
)
def test_x86_classes(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    assert cpu_class(cpuinfo, machine="x86_64") == expected


def test_arm_boards_and_unknown_machines(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert cpu_class(cpuinfo, machine="aarch64") == ARM64
    assert cpu_class(tmp_path / "missing", machine="riscv64") == "riscv64"
    assert cpu_class(tmp_path / "missing", machine="x86_64") == X86_OLDER  # no cpuinfo: nothing claimed
