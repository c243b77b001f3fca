"""What the page is made of: the files of a run directory (or of an outside model's export folder), read once.

Every part is optional: a section is shown when its data is there. A file that is there but damaged is the
user's to fix, and raises a ModelFileError naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgetl.benchmark.result import BenchRow
from edgetl.data.split import Split
from edgetl.errors import ModelFileError
from edgetl.run import RunDir
from edgetl.training.reports import CLASSIFICATION_REPORT, TEST_PREDICTIONS


def read_json(path: Path, expected: type) -> object | None:
    """The JSON document at `path`, None when there is no such file; a damaged one raises naming the file."""
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(document, expected):
        raise ModelFileError(f"{path}: expected a JSON {expected.__name__}, found {type(document).__name__}")
    return document


@dataclass
class RunView:
    """The parts of a run directory the page shows; None (or empty) where the run has no such file."""

    root: Path
    split: Split | None = None
    config: dict | None = None
    preprocessing: dict | None = None
    metrics: dict | None = None
    history: dict | None = None
    classification_report: dict | None = None
    test_predictions: dict | None = None
    exports: list[dict] = field(default_factory=list)
    bench_rows: list[BenchRow] = field(default_factory=list)
    bench_files: list[Path] = field(default_factory=list)
    missing_predictions: str | None = None  # why Keras' test predictions are not shown, when they are not

    @property
    def run(self) -> RunDir:
        return RunDir(self.root)

    @property
    def class_names(self) -> list[str]:
        if self.split is not None:
            return self.split.class_names
        if self.preprocessing is not None:
            return list(self.preprocessing.get("labels", []))
        return []


def read_bench_rows(folder: Path) -> tuple[list[BenchRow], list[Path]]:
    """Every row of every bench JSON file in `folder` (this machine's and any other machine's put there)."""
    from edgetl.benchmark.compare import load_rows

    if not folder.is_dir():
        return [], []
    files = sorted(path for path in folder.glob("*.json") if path.is_file())
    rows = [row for path in files for row in load_rows(path)]
    return rows, files


def load_run(path: Path) -> RunView:
    """Read what there is of the run directory (or export folder) `path`."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"{path}: no such run directory or export folder (make one with `edgetl train`)")
    run = RunDir(path)
    if not run.split.is_file() and not run.exports_index.is_file():
        raise ModelFileError(
            f"{path}: neither an edgetl run ({run.split.name} is missing) nor an export folder "
            f"({run.exports_index.name} is missing)"
        )
    view = RunView(path)
    if run.split.is_file():
        view.split = run.read_split()
    view.config = read_json(run.config, dict)
    view.preprocessing = read_json(run.preprocessing, dict)
    view.metrics = read_json(run.metrics, dict)
    view.history = read_json(run.history, dict)
    view.classification_report = read_json(run.report_dir / CLASSIFICATION_REPORT, dict)
    view.test_predictions = read_json(run.report_dir / TEST_PREDICTIONS, dict)
    exports = read_json(run.exports_index, list)
    view.exports = [record for record in exports or [] if isinstance(record, dict)]
    view.bench_rows, view.bench_files = read_bench_rows(run.bench_dir)
    return view
