"""The device bench on ARM boards over SSH: copy, run with the board's own python3, fetch the JSON, clean up.

Uses the `ssh` and `scp` binaries, so the user's ~/.ssh/config, keys and agent apply. BatchMode=yes means a
board that wants a password fails instead of hanging; host keys are always checked; every remote argument is
quoted. Boards run in parallel, each in its own temporary directory that is removed afterwards.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgetl.benchmark.exported import Measured
from edgetl.benchmark.result import BenchRow
from edgetl.benchmark.settings import BenchSettings, SshSettings
from edgetl.benchmark.worker import WorkerRequest
from edgetl.errors import EdgetlError
from edgetl.progress import step
from edgetl.runtime.runtimes import MODEL_SUFFIXES, runtimes_for

log = logging.getLogger(__name__)

# What the device bench needs on the board, by model suffix: any one module of each tuple.
NEEDED_MODULES = {
    "": (("numpy",), ("PIL",)),
    **{
        suffix: (tuple(runtime.package for runtime in runtimes_for(suffix, light_only=True).values()),)
        for suffix in MODEL_SUFFIXES
    },
}
# The oldest Python edgetl runs on, as pyproject.toml's requires-python says (tests/benchmark/test_remote.py checks).
MIN_PYTHON = (3, 10)
SAFE_REMOTE_DIR = re.compile(r"^/[A-Za-z0-9._/-]+$")
DISK_MARGIN_BYTES = 20 * 1024 * 1024
SSH_LOST = 255


class RemoteError(EdgetlError):
    """A board could not be benched: no connection, no python3, missing extras, no space."""


def _base(program: str, ssh: SshSettings) -> list[str]:
    options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={ssh.connect_timeout_s}"]
    for option in ssh.options:
        options += ["-o", option]
    return [program, *options]


def _run_ssh(host: str, command: str, ssh: SshSettings, timeout: int | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [*_base("ssh", ssh), "--", host, command],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout or ssh.command_timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{host}: no answer within {timeout or ssh.command_timeout_s} s over SSH") from None
    except FileNotFoundError:
        raise RemoteError("the `ssh` program is not installed here: install OpenSSH's client") from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _check(host: str, result: subprocess.CompletedProcess, doing: str) -> str:
    if result.returncode == SSH_LOST:
        raise RemoteError(f"{host}: cannot connect over SSH ({_last_line(result.stderr)})")
    if result.returncode != 0:
        raise RemoteError(f"{host}: {doing} failed ({_last_line(result.stderr or result.stdout)})")
    return result.stdout


def _preflight_script(python: str, suffixes: set[str]) -> str:
    """One round trip: is there a python, are the extras there, make a temp dir, report its free space."""
    needed = [group for suffix in ("", *sorted(suffixes)) for group in NEEDED_MODULES.get(suffix, ())]
    check = (
        "import importlib.util as u, sys\n"
        f"groups = {needed!r}\n"
        "missing = ['/'.join(g) for g in groups if not any(u.find_spec(m) for m in g)]\n"
        "print('python=%d.%d' % sys.version_info[:2])\n"
        "print('missing=' + ','.join(missing))\n"
    )
    py = shlex.quote(python)
    return (
        f"command -v {py} >/dev/null 2>&1 || {{ echo no-python; exit 0; }}; "
        f"{py} -c {shlex.quote(check)} || exit 1; "
        'd=$(mktemp -d "${TMPDIR:-/tmp}/edgetl-bench.XXXXXX") || exit 1; '
        'echo "dir=$d"; echo "arch=$(uname -m)"; '
        'echo "free_kb=$(df -Pk "$d" | awk \'NR==2 {print $4}\')"'
    )


def _package_zip(destination: Path) -> Path:
    """The pure-Python edgetl package as a zip the board imports from (PYTHONPATH=edgetl.zip)."""
    import edgetl

    package = Path(edgetl.__file__).resolve().parent
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(package.rglob("*.py")):
            archive.write(file, Path("edgetl") / file.relative_to(package))
    return destination


def _payload(
    folder: Path, exports: list[tuple[str, Path]], images: list[tuple[Path, str]], request: WorkerRequest
) -> list[Path]:
    """edgetl.zip, models/, images/, images.csv (file,label) and the worker's request.json in `folder`; images keep
    the given order."""
    import csv
    import io
    import shutil

    _package_zip(folder / "edgetl.zip")
    (folder / "models").mkdir()
    for _, path in exports:
        shutil.copy2(path, folder / "models" / path.name)
    (folder / "images").mkdir()
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["file", "label"])
    for index, (image, label) in enumerate(images):
        name = f"{index:05d}{Path(image).suffix.lower()}"
        shutil.copy2(image, folder / "images" / name)
        writer.writerow([f"images/{name}", label])
    (folder / "images.csv").write_text(table.getvalue(), encoding="utf-8")
    (folder / "request.json").write_text(request.to_json(), encoding="utf-8")
    return [folder / name for name in ("edgetl.zip", "models", "images", "images.csv", "request.json")]


def _size(paths: list[Path]) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def bench_remote(
    host: str,
    exports: list[tuple[str, Path]],
    images: list[tuple[Path, str]],
    settings: BenchSettings,
    threads_values: list[int | None],
    ssh: SshSettings,
) -> list[Measured]:
    """Bench `exports` on one board; rows come back with host=`host` and device=the board's `uname -m`."""
    if host.startswith("-") or not host.strip():
        raise RemoteError(f"--remote {host!r}: expected user@host or a Host alias from ~/.ssh/config")
    suffixes = {path.suffix.lower() for _, path in exports}
    facts = {}
    output = _check(host, _run_ssh(host, _preflight_script(ssh.python, suffixes), ssh, 60), "checking the board")
    if output.strip() == "no-python":
        raise RemoteError(
            f"{host}: no {ssh.python} on the board; install Python {_release(MIN_PYTHON)}+ or pass --remote-python PATH"
        )
    for line in output.splitlines():
        key, _, value = line.partition("=")
        facts[key.strip()] = value.strip()
    remote_dir = facts.get("dir", "")
    if not SAFE_REMOTE_DIR.match(remote_dir):
        raise RemoteError(f"{host}: unexpected answer while making a temporary directory ({_last_line(output)})")
    try:
        version = tuple(int(part) for part in facts.get("python", "0.0").split(".") if part.isdigit())
        if version < MIN_PYTHON:
            raise RemoteError(
                f"{host}: {ssh.python} is Python {facts.get('python')}; the bench needs {_release(MIN_PYTHON)} or newer"
            )
        if facts.get("missing"):
            raise RemoteError(
                f"{host}: the board's {ssh.python} lacks {facts['missing'].replace(',', ', ')}; "
                'install them there: pip install "edgetl[device]" (or numpy pillow ai-edge-litert onnxruntime)'
            )
        return _bench_in(host, remote_dir, facts, exports, images, settings, threads_values, ssh)
    finally:
        cleanup = _run_ssh(host, f"rm -rf -- {shlex.quote(remote_dir)}", ssh, 60)
        if cleanup.returncode != 0:
            log.warning("%s: could not remove %s (%s)", host, remote_dir, _last_line(cleanup.stderr))


def _release(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def _bench_in(host, remote_dir, facts, exports, images, settings, threads_values, ssh) -> list[Measured]:
    with tempfile.TemporaryDirectory(prefix="edgetl-remote-") as scratch:
        local = Path(scratch)
        (local / "out").mkdir()
        # Paths in the request are relative to the board's temporary directory, where the worker runs.
        request = WorkerRequest(
            models=[f"models/{path.name}" for _, path in exports],
            settings=settings,
            threads=[t for t in threads_values if t] or [None],
            out="result.json",
            probabilities="probabilities.npz",
            images="images.csv",
        )
        payload = _payload(local / "out", exports, images, request)
        needed = _size(payload) * 2 + DISK_MARGIN_BYTES  # the files, plus the worker's decoded copies and results
        free = int(facts.get("free_kb") or 0) * 1024
        if free < needed:
            raise RemoteError(
                f"{host}: only {free // 2**20} MB free in {remote_dir}, the bench needs {needed // 2**20} MB; "
                "free some space or point TMPDIR at a bigger disk"
            )
        _copy(host, [str(p) for p in payload], f"{host}:{remote_dir}/", ssh)
        command = (
            f"cd {shlex.quote(remote_dir)} && PYTHONPATH={shlex.quote(remote_dir + '/edgetl.zip')} "
            f"{shlex.quote(ssh.python)} -m edgetl.benchmark.worker request.json"
        )
        _check(host, _run_ssh(host, command, ssh), "the bench on the board")
        _copy(host, [f"{host}:{remote_dir}/result.json", f"{host}:{remote_dir}/probabilities.npz"], str(local), ssh)
        raw_rows = json.loads((local / "result.json").read_text(encoding="utf-8"))
        with np.load(local / "probabilities.npz") as stored:
            probabilities = [stored[f"row{i}"] for i in range(len(raw_rows))]
    format_by_file = {path.name: name for name, path in exports}
    measured = []
    for raw, probability in zip(raw_rows, probabilities, strict=True):
        row = BenchRow.from_dict(raw, f"{host}:{remote_dir}/result.json")
        name = format_by_file.get(Path(row.path).name, row.format)
        where = f"{host}:{remote_dir}/models/{Path(row.path).name}"
        row = replace(row, format=name, path=where, host=host, device=facts.get("arch", row.device))
        measured.append(Measured(row, probability))
    return measured


def _copy(host: str, sources: list[str], destination: str, ssh: SshSettings) -> None:
    # scp speaks SFTP by default; boards whose server has no SFTP subsystem (Dropbear) need the legacy protocol (-O).
    for protocol in ([], ["-O"]):
        try:
            result = subprocess.run(
                [*_base("scp", ssh), *protocol, "-q", "-r", "--", *sources, destination],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=ssh.command_timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{host}: copying files took longer than {ssh.command_timeout_s} s") from None
        except FileNotFoundError:
            raise RemoteError("the `scp` program is not installed here: install OpenSSH's client") from None
        no_sftp = "subsystem request failed" in result.stderr or "Connection closed" in result.stderr
        if result.returncode == 0 or not no_sftp:
            break
    _check(host, result, "copying files")


def bench_remotes(
    hosts: list[str],
    exports: list[tuple[str, Path]],
    images: list[tuple[Path, str]],
    settings: BenchSettings,
    threads_values: list[int | None],
    ssh: SshSettings | None = None,
) -> tuple[list[Measured], list[str]]:
    """Every board in parallel; the rows of those that worked, and one error line per board that did not."""
    ssh = ssh or SshSettings()
    workers = max(1, len(hosts))
    with step(f"benchmarking on {len(hosts)} board(s)", len(hosts)) as benching, ThreadPoolExecutor(workers) as pool:
        futures = {
            pool.submit(bench_remote, host, exports, images, settings, threads_values, ssh): host for host in hosts
        }
        for done in as_completed(futures):
            benching.describe(f"benchmarking on boards ({futures[done]} done)")
            benching.advance()
    measured, errors = [], []
    for future, host in futures.items():
        try:
            measured += future.result()
        except RemoteError as error:
            errors.append(str(error))
        except EdgetlError as error:
            errors.append(f"{host}: {error}")
    return measured, errors
