"""Where a result was measured: enough about the machine to tell whether two figures are comparable.

Reads only the standard library and /proc, /sys: it runs on a board without TensorFlow, and looking up
package versions through importlib.metadata imports none of them.
"""

from __future__ import annotations

import os
import platform
import struct
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgetl.runtime.runtimes import RUNTIME_DISTRIBUTIONS

# Distributions whose versions change the figures, looked up, never imported: the runtimes (from their registry)
# and the libraries that decode and hold the images.
MEASURED_DISTRIBUTIONS = (*RUNTIME_DISTRIBUTIONS, "numpy", "pillow")

# ELF e_machine values of the interpreter binary, to tell the host's architecture from the one uname reports.
ELF_MACHINES = {0x03: "i686", 0x28: "armv7l", 0x3E: "x86_64", 0xB7: "aarch64", 0xF3: "riscv64", 0x15: "ppc64le"}

GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
THERMAL = Path("/sys/class/thermal")
BINFMT = Path("/proc/sys/fs/binfmt_misc")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name; on ARM boards /proc/cpuinfo's Model line ("Raspberry Pi 4 Model B")."""
    cpuinfo = _read(Path("/proc/cpuinfo")) or ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "model", "hardware", "cpu model", "uarch"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine() or "unknown"


def temperature_c() -> float | None:
    """The hottest thermal zone in degrees Celsius, where the kernel exposes any (a throttling board runs slower)."""
    readings = []
    for zone in sorted(THERMAL.glob("thermal_zone*/temp")):
        raw = _read(zone)
        if raw and raw.lstrip("-").isdigit():
            readings.append(int(raw) / 1000.0)
    return max(readings) if readings else None


def runtime_versions() -> dict[str, str]:
    versions = {}
    for name in MEASURED_DISTRIBUTIONS:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def interpreter_architecture(executable: str | None = None) -> str | None:
    """The architecture the Python binary was built for, from its ELF header (None when not ELF)."""
    try:
        with open(executable or sys.executable, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    order = "<" if header[5] == 1 else ">"
    (machine,) = struct.unpack(order + "H", header[18:20])
    return ELF_MACHINES.get(machine, f"elf-{machine:#x}")


def emulation_reasons() -> list[str]:
    """Signs that this process runs under an emulator (qemu-user, via binfmt_misc), which makes timings meaningless.

    A kernel only registers a qemu handler for foreign architectures, so an enabled handler for the architecture
    we run as means we are the foreign one; qemu-user also shows the host's cpuinfo, which can contradict uname.
    """
    machine = platform.machine().lower()
    reasons = []
    binary = interpreter_architecture()
    if binary and machine and binary != machine and not {binary, machine} <= {"i686", "x86_64"}:
        reasons.append(f"python binary is {binary} but the machine reports {machine}")
    aliases = {"aarch64": "aarch64", "arm64": "aarch64", "armv7l": "arm", "armv6l": "arm", "riscv64": "riscv64"}
    handler = BINFMT / f"qemu-{aliases.get(machine, machine)}"
    if machine not in ("x86_64", "amd64") and (_read(handler) or "").startswith("enabled"):
        reasons.append(f"{handler} is enabled for this machine's own architecture")
    cpuinfo = (_read(Path("/proc/cpuinfo")) or "").lower()
    if machine.startswith(("arm", "aarch")) and ("genuineintel" in cpuinfo or "authenticamd" in cpuinfo):
        reasons.append("an ARM machine reporting an x86 CPU in /proc/cpuinfo")
    return reasons


def machine_fingerprint() -> dict:
    """What is the same for every row measured in this process; runtime, provider and threads are added per row."""
    reasons = emulation_reasons()
    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "architecture": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": runtime_versions(),
        "governor": _read(GOVERNOR),
        "temperature_c": temperature_c(),
        "emulated": bool(reasons),
        "emulation_reasons": reasons,
    }


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far, or None where the system does not say.

    Linux: VmHWM, which starts afresh in each new program; getrusage's ru_maxrss would carry over the peak of
    the parent that forked a fresh bench process, and report the parent's memory as the child's.
    """
    status = _read(Path("/proc/self/status")) or ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    try:
        import resource
    except ImportError:  # Windows
        resource = None
    if resource is not None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) if sys.platform == "darwin" else int(peak) * 1024
    try:
        import psutil
    except ImportError:
        return None
    info = psutil.Process().memory_info()
    return int(getattr(info, "peak_wset", info.rss))
