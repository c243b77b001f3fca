"""`edgetl doctor`: which runtimes can run a model here, and for each that cannot, why and what to install."""

from __future__ import annotations

import importlib
import platform
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgetl.runtime.cpu import cpu_class
from edgetl.runtime.engine import is_available
from edgetl.runtime.litert import TFLITE_RUNTIMES, distribution_version, import_interpreter

THIRTY_TWO_BIT_ARM = ("armv6l", "armv7l", "armhf", "arm")
# Python versions ai-edge-litert publishes wheels for (Linux x86_64/aarch64, macOS arm64).
LITERT_PYTHONS = ((3, 10), (3, 13))


@dataclass(frozen=True)
class RuntimeCheck:
    name: str
    runs: str  # which model files it runs
    version: str | None  # None: not installed
    usable: bool
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        """One line saying whether it runs here, and the fix on a second when it does not."""
        state = "ok" if self.usable else "--"
        line = f"[{state}] {self.name:<15} {self.version or 'not installed':<14} {self.runs:<8} {self.detail}"
        return [line, f"     fix: {self.fix}"] if self.fix else [line]


def installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _numpy_major() -> int:
    release = installed_version("numpy") or "0"
    return int(release.split(".")[0])


def _check_tflite(name: str) -> RuntimeCheck:
    distribution = TFLITE_RUNTIMES[name].distribution
    release = installed_version(distribution)
    machine = platform.machine().lower()
    python = sys.version_info[:2]
    if name == "tensorflow":
        if release is None:
            return RuntimeCheck(name, ".tflite", None, False, "not installed (last resort, not needed on a device)")
        # Importing TensorFlow takes seconds: say what it is for without paying for it.
        return RuntimeCheck(name, ".tflite", release, True, "installed; used only when no light runtime imports")
    if release is None:
        if name == "litert":
            if machine in THIRTY_TWO_BIT_ARM:
                why = f"no ai-edge-litert wheels for 32-bit ARM ({machine})"
                fix = "install a 64-bit OS on the board (aarch64), or pip install tflite-runtime 'numpy<2'"
            elif not (LITERT_PYTHONS[0] <= python <= LITERT_PYTHONS[1]):
                why = f"no ai-edge-litert wheels for Python {python[0]}.{python[1]}"
                fix = "use Python 3.10-3.13 for the device extras"
            else:
                why, fix = "not installed", 'pip install "edgetl[device]"'
            return RuntimeCheck(name, ".tflite", None, False, why, fix)
        if python > (3, 11):
            why = f"not installed (tflite-runtime stops at 2.14: wheels up to Python 3.11, not {python[0]}.{python[1]})"
        else:
            why = "not installed (optional fallback; stops at 2.14)"
        return RuntimeCheck(name, ".tflite", None, False, why, "use ai-edge-litert, its successor")
    try:
        import_interpreter(name)
    except ImportError as error:
        if name == "tflite-runtime" and _numpy_major() >= 2:
            why = f"tflite-runtime {release} was built for NumPy 1 and NumPy {installed_version('numpy')} is installed"
            return RuntimeCheck(name, ".tflite", release, False, why, "pip install ai-edge-litert (or 'numpy<2')")
        return RuntimeCheck(name, ".tflite", release, False, f"fails to import: {str(error).splitlines()[0]}")
    return RuntimeCheck(name, ".tflite", distribution_version(distribution), True, "imports; XNNPACK delegate on CPU")


def _nvidia_gpu_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()


def _check_onnxruntime() -> RuntimeCheck:
    gpu_build = installed_version("onnxruntime-gpu")
    release = installed_version("onnxruntime") or gpu_build
    if release is None or not is_available("onnxruntime"):
        return RuntimeCheck("onnxruntime", ".onnx", None, False, "not installed", 'pip install "edgetl[device]"')
    try:
        onnxruntime = importlib.import_module("onnxruntime")
    except ImportError as error:
        return RuntimeCheck("onnxruntime", ".onnx", release, False, f"fails to import: {error}")
    providers = onnxruntime.get_available_providers()
    detail = "providers: " + ", ".join(providers)
    fix = ""
    if "CUDAExecutionProvider" not in providers:
        if gpu_build:
            detail += "; no GPU provider: onnxruntime-gpu cannot find the CUDA/cuDNN libraries"
            fix = "install the CUDA and cuDNN versions onnxruntime-gpu was built for"
        elif _nvidia_gpu_present():
            detail += "; no GPU provider: this is the CPU build"
            fix = 'pip uninstall onnxruntime && pip install "edgetl[gpu]"'
        else:
            detail += "; no GPU here"
    return RuntimeCheck("onnxruntime", ".onnx", onnxruntime.__version__, True, detail, fix)


def check_runtimes() -> list[RuntimeCheck]:
    return [_check_tflite(name) for name in TFLITE_RUNTIMES] + [_check_onnxruntime()]


def machine_summary() -> str:
    numpy = installed_version("numpy") or "not installed"
    return (
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()} ({cpu_class()} for int8), "
        f"NumPy {numpy}, Pillow {installed_version('pillow') or 'not installed'}"
    )
