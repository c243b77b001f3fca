"""The runtimes that run exported files, in one registry: `--runtime`'s choices, the engines' order of preference,
what the device bench imports before it times a load, what a board must have, and what `edgetl doctor` checks.

Light on purpose (no NumPy), so the CLI reads the choices without paying for them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Runtime:
    name: str  # as --runtime names it
    suffix: str  # the model files it runs
    module: str  # the module holding its Interpreter class (TFLite) or its InferenceSession (ONNX)
    distribution: str  # the pip distribution that provides it
    # Other distributions that provide the same module, a build of it for other hardware.
    other_builds: tuple[str, ...] = ()
    # What a board has. TensorFlow's interpreter is a workstation's last resort, imported only when neither light
    # TFLite runtime can be, and is never asked of a board.
    light: bool = True

    @property
    def package(self) -> str:
        """The top-level package, what `importlib.util.find_spec` looks for."""
        return self.module.split(".")[0]


# In order of preference for each suffix.
RUNTIMES: dict[str, Runtime] = {
    runtime.name: runtime
    for runtime in (
        Runtime("litert", ".tflite", "ai_edge_litert.interpreter", "ai-edge-litert"),
        Runtime("tflite-runtime", ".tflite", "tflite_runtime.interpreter", "tflite-runtime"),
        Runtime("tensorflow", ".tflite", "tensorflow.lite.python.interpreter", "tensorflow", light=False),
        Runtime("onnxruntime", ".onnx", "onnxruntime", "onnxruntime", other_builds=("onnxruntime-gpu",)),
    )
}
# Every distribution that provides a runtime, in the registry's order: the versions a bench records.
RUNTIME_DISTRIBUTIONS = tuple(
    name for runtime in RUNTIMES.values() for name in (runtime.distribution, *runtime.other_builds)
)
# The model files edgetl runs, by suffix.
MODEL_SUFFIXES = tuple(dict.fromkeys(runtime.suffix for runtime in RUNTIMES.values()))


def runtimes_for(suffix: str, light_only: bool = False) -> dict[str, Runtime]:
    """The runtimes that run `suffix` files, in order of preference; `light_only`: those a board may have."""
    return {
        name: runtime
        for name, runtime in RUNTIMES.items()
        if runtime.suffix == suffix and (runtime.light or not light_only)
    }
