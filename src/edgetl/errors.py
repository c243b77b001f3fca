"""Errors a user can cause. The CLI prints their message as one line and exits non-zero."""


class EdgetlError(Exception):
    """Base class: the message names the value received, what was expected and the fix."""


class DataError(EdgetlError):
    """A dataset folder, image or split is unusable."""


class ModelFileError(EdgetlError):
    """A model file or run directory is missing, damaged or of the wrong kind."""


class WriteError(EdgetlError):
    """A file could not be written (disk full, no permission); nothing partial was left."""


class MissingExtraError(EdgetlError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str, purpose: str):
        super().__init__(f"{purpose} needs the Python package '{module}': pip install \"edgetl[{extra}]\"")


class WeightsError(EdgetlError):
    """Pretrained weights could not be loaded (no network, bad file)."""


class TrainingInterrupted(EdgetlError):
    """Training stopped (Ctrl-C); the run directory holds the last checkpoint to resume from."""


class UsageError(EdgetlError):
    """The arguments of a call do not fit together (model files without images, an unknown option); the CLI
    reports it as click does a bad command line."""


def csv_problem(error: Exception) -> str:
    """What is wrong with a CSV file, for a one-line message: where its text is not UTF-8, or the csv module's
    reason (a NUL byte, a field over its size limit)."""
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text: {error.reason}; save it as UTF-8"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
