"""edgetl: transfer learning for image classifiers, exported and verified for edge devices."""

__version__ = "0.1.0"
