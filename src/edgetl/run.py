"""The run directory: the contract between `train`, `export` and `bench`.

`train` writes model.keras, labels.txt, config.json, preprocessing.json, split.json, history.json,
metrics.json and report/ (and data/ for array datasets; checkpoint/ and cache/ while it trains); `export` adds
exports/, exports.json and logs/export.log; `bench` adds bench/bench.json; `edgetl report` writes
report/index.html; every write is atomic. `RunDir` is the one place that names them.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgetl.config import TrainConfig
from edgetl.data.split import Split
from edgetl.errors import ModelFileError, WriteError
from edgetl.files import atomic_write, open_no_follow, remove_if_there
from edgetl.progress import step
from edgetl.runtime.metadata import MAX_METADATA_BYTES, ModelMetadata

REPORT_DIR = "report"  # train's reports, and `edgetl report`'s page
# Bench results of the run: `edgetl bench RUN` writes BENCH_RESULTS there; JSON files from other machines may join it.
BENCH_DIR = "bench"
BENCH_RESULTS = "bench.json"

# Keras' reason for not loading a model, cut to what a one-line message can carry.
LOAD_ERROR_MAX_CHARS = 200


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of the shared run file `path`, so that processes working on
    one run (two exports at once) never overwrite each other's records. POSIX advisory lock on a sibling file;
    where fcntl is missing (Windows) there is no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(f"{lock_path}: could not be created ({error.strerror or error})") from None
    # A lock file planted as a link would make edgetl create or lock a file outside the run.
    with os.fdopen(open_no_follow(lock_path, os.O_RDWR | os.O_CREAT), "r+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def model(self) -> Path:
        return self.path / "model.keras"

    @property
    def labels(self) -> Path:
        return self.path / "labels.txt"

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def preprocessing(self) -> Path:
        return self.path / "preprocessing.json"

    @property
    def split(self) -> Path:
        return self.path / "split.json"

    @property
    def history(self) -> Path:
        return self.path / "history.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def exports_dir(self) -> Path:
        return self.path / "exports"

    @property
    def exports_index(self) -> Path:
        return self.path / "exports.json"

    @property
    def export_log(self) -> Path:
        """The converters' own output and the full trace of a failed conversion."""
        return self.path / "logs" / "export.log"

    @property
    def report_dir(self) -> Path:
        """Classification report, confusion matrix, training curves, test predictions, and `edgetl report`'s page."""
        return self.path / REPORT_DIR

    @property
    def bench_dir(self) -> Path:
        """`edgetl bench RUN`'s rows (BENCH_RESULTS), beside JSON files from other machines."""
        return self.path / BENCH_DIR

    @property
    def array_data_dir(self) -> Path:
        """An .npz or TFDS dataset's test images and a few training images as PNG files, for export and bench."""
        return self.path / "data"

    @property
    def cache_dir(self) -> Path:
        """Decoded pixels and spilled features while the run trains; removed when it ends."""
        return self.path / "cache"

    @property
    def checkpoint_dir(self) -> Path:
        """The last completed epoch's weights and state, for `--resume`; removed when training ends."""
        return self.path / "checkpoint"

    def require_trained(self) -> None:
        if not self.path.is_dir():
            raise ModelFileError(f"{self.path}: no such run directory (create one with `edgetl train`)")
        for needed in (self.model, self.preprocessing, self.split):
            if not needed.is_file():
                raise ModelFileError(f"{self.path}: not a finished edgetl run ({needed.name} is missing)")

    def read_config(self) -> TrainConfig:
        return TrainConfig.from_json(self.config.read_bytes(), str(self.config))

    def read_metadata(self) -> ModelMetadata:
        # Read as bytes and at most one byte over the metadata's cap: from_json names what is wrong (too big, not
        # UTF-8) in one line, and a planted huge file is never read whole.
        with open(self.preprocessing, "rb") as handle:
            data = handle.read(MAX_METADATA_BYTES + 1)
        return ModelMetadata.from_json(data, str(self.preprocessing))

    def read_split(self) -> Split:
        return Split.read(self.split)

    def read_exports(self) -> list[dict]:
        return read_exports_index(self.exports_index)

    def load_model(self, safe_mode: bool = True):
        """The Keras model; safe mode never runs code stored in the file."""
        return load_keras_model(self.model, trust_model=not safe_mode)


def read_exports_index(index: Path) -> list[dict]:
    """The records `edgetl export` keeps in exports.json, or none before the first export."""
    if not os.path.lexists(index):
        return []
    from edgetl.schemas import read_exports_file

    return read_exports_file(index)


def record_export(index: Path, record: dict) -> None:
    """Add or replace one format's record in exports.json, merged under a lock with what other processes wrote."""
    with locked(index):
        _write_record(index, record)


def _write_record(index: Path, record: dict, order: list[str] | None = None) -> None:
    """`record` added to exports.json or put in place of its format's; the records listed in `order` (format names),
    where given, any others after them as they were."""
    records = {entry["format"]: entry for entry in read_exports_index(index)}
    records[record["format"]] = record
    listed = list(records.values())
    if order is not None:
        listed.sort(key=lambda entry: order.index(entry["format"]) if entry["format"] in order else len(order))
    atomic_write(index, json.dumps(listed, indent=1))


def commit_export(index: Path, written: Path, destination: Path, record: dict, order: list[str] | None = None) -> None:
    """Move the verified file (or folder) `written` to `destination` and its record into exports.json as one
    change, under the run's lock: if either step fails or is interrupted, the old file and the old record are
    put back, so a record never describes a file other than the one beside it. `order`: the order exports.json
    lists formats in (whatever order they are made in)."""
    with locked(index):
        previous = destination.with_name(f".{destination.name}.previous")
        remove_if_there(previous)
        had_previous = os.path.lexists(destination)
        if had_previous:
            os.replace(destination, previous)
        try:
            os.replace(written, destination)
            _write_record(index, record, order)
        except BaseException:
            if had_previous:
                remove_if_there(destination)
                os.replace(previous, destination)
            raise
        remove_if_there(previous)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def changed_since_export(root: Path, record: dict, index: Path) -> str | None:
    """Why an exported file cannot be trusted as its record says (changed, cut short or replaced since `edgetl
    export` verified it), or None when its size and sha256 are those recorded. Folders (SavedModel) are not
    compared."""
    path = root / record["path"]
    if path.is_dir():
        return None
    size = path.stat().st_size
    if size != record["size_bytes"] or file_sha256(path) != record["sha256"]:
        return (
            f"{path}: differs from its record in {index.name} (size or sha256 changed since `edgetl export` "
            f"verified it); not trusted: export {record['format']} again"
        )
    return None


def record_verification(index: Path, format_name: str, where: dict) -> None:
    """Add one place a file was verified (export/consumers.measured_where) to its record in exports.json,
    replacing an earlier figure of the same runtime, CPU class and host; merged under the index's lock."""

    def key(entry: dict) -> tuple:
        return entry.get("runtime"), entry.get("cpu"), entry.get("host", "")

    with locked(index):
        records = read_exports_index(index)
        for record in records:
            if record.get("format") == format_name:
                places = [entry for entry in record.get("verified_on", []) if key(entry) != key(where)]
                record["verified_on"] = [*places, where]
        atomic_write(index, json.dumps(records, indent=1))


def load_keras_model(path: Path, trust_model: bool = False):
    """Load a Keras file; in safe mode (the default) code stored in it (Lambda layers) is refused, not run."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a Keras model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such Keras model file")
    # Keras answers "File not found" for a .keras file that exists but is no zip archive (cut short, damaged).
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        size = path.stat().st_size
        state = "empty" if size == 0 else f"{size} bytes but not a zip archive"
        raise ModelFileError(f"{path}: not a loadable Keras model (the file exists, {state}: cut short or corrupted)")
    from edgetl.tfquiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    try:
        with step(f"loading {path.name}"):
            return keras.saving.load_model(path, safe_mode=not trust_model)
    # NotImplementedError: Keras cannot rebuild a Lambda layer whose output shape it cannot infer.
    except (ValueError, OSError, TypeError, KeyError, AttributeError, NotImplementedError, zipfile.BadZipFile) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "safe_mode" in reason or "Lambda" in reason:
            raise ModelFileError(
                f"{path}: holds Python code (a Lambda layer) that safe mode will not run; pass --trust-model "
                f"only if you trust where the file came from"
            ) from None
        raise ModelFileError(f"{path}: not a loadable Keras model ({reason[:LOAD_ERROR_MAX_CHARS]})") from None
