"""edgetl: transfer learning for image classifiers, exported and verified for edge devices."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`edgetl.Classifier` is imported when first asked for, so `import edgetl` (and the CLI) stays light."""
    if name == "Classifier":
        from edgetl.runtime.classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'edgetl' has no attribute {name!r}")
