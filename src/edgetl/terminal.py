"""Drawing on the terminal: whether a person watches, how wide a table may be, and the library's progress and log
records drawn with rich above each other; how a command ends (its report page refreshed, its gates, a SIGTERM taken
as Ctrl-C). Only `cli.py` uses it; rich is imported only when something is drawn.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import click

from edgetl import progress
from edgetl.errors import EdgetlError


def interactive() -> bool:
    """Whether a person watches: stdout and stderr are a terminal, and not a CI runner's."""
    streams = (sys.stdout, sys.stderr)
    terminal = all(hasattr(s, "isatty") and s.isatty() for s in streams) and os.environ.get("TERM") != "dumb"
    return terminal and not os.environ.get("CI")


def table_layout() -> tuple[int | None, bool]:
    """How wide a table may be, and whether in colour: the terminal's width on a terminal; when piped, COLUMNS
    if set, else as wide as the table needs (a file is not wrapped)."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns, "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
    columns = os.environ.get("COLUMNS", "")
    return (int(columns) if columns.isdigit() and int(columns) > 0 else None), False


class TerminalProgress(progress.Reporter):
    """The library's steps drawn with rich on stderr: a line per open step with its bar, count, elapsed and
    remaining time; a finished step that took a while leaves a line saying how long."""

    SHOWN_AFTER_S = 0.5  # a step quicker than this leaves no line behind

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            refresh_per_second=4,
        )
        self.open = 0

    def start(self, description: str, total: int | None) -> progress.Step:
        if self.open == 0:
            self.bars.start()
        self.open += 1
        return TerminalStep(self.bars, self.bars.add_task(description, total=total, count="", eta=""), total)

    def stop(self, step: progress.Step) -> None:
        task = next(task for task in self.bars.tasks if task.id == step.task_id)
        seconds = time.perf_counter() - step.started
        self.bars.remove_task(step.task_id)
        if seconds >= self.SHOWN_AFTER_S:
            done = f" {int(task.completed)}/{int(task.total)}" if task.total else ""
            self.console.print(f"[green]✓[/] {task.description}{done} [dim]{seconds:.1f} s[/]", highlight=False)
        self.open -= 1
        if self.open == 0:
            self.bars.stop()


class TerminalStep(progress.Step):
    def __init__(self, bars, task_id, total: int | None) -> None:
        self.bars, self.task_id, self.total = bars, task_id, total
        self.started = time.perf_counter()
        self.completed = 0
        if total:
            self.bars.update(task_id, count=f"0/{total}")

    def advance(self, amount: int = 1) -> None:
        self.completed += amount
        fields = {}
        if self.total:
            seconds = time.perf_counter() - self.started
            left = seconds / self.completed * (self.total - self.completed) if self.completed else None
            fields = {"count": f"{self.completed}/{self.total}", "eta": "" if left is None else f"~{left:.0f} s left"}
        self.bars.update(self.task_id, advance=amount, **fields)

    def describe(self, description: str) -> None:
        self.bars.update(self.task_id, description=description)


class ConsoleLog(logging.Handler):
    """Log records printed above the progress bars instead of through them."""

    def __init__(self, console, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_shown(quiet: bool):
    """Draw the progress of what runs in the block, if a person watches and did not ask for --quiet."""
    if quiet or not interactive():
        yield
        return
    from rich.console import Console

    # A duplicate of file descriptor 2: while converters run, descriptor 2 itself is sent to a log file.
    stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", encoding="utf-8", errors="replace", buffering=1)
    console = Console(file=stream, highlight=False, emoji=False)
    root = logging.getLogger()
    handlers = root.handlers[:]
    root.handlers = [ConsoleLog(console, handlers[0].formatter if handlers else None)]
    reporter = TerminalProgress(console)
    try:
        with progress.reporting(reporter):
            yield
    finally:
        reporter.bars.stop()
        root.handlers = handlers
        stream.close()


def refresh_report(root: Path, no_report: bool) -> None:
    """Rewrite the page of a run a command just changed. A page that cannot be written is a warning: the command's
    own work is done."""
    if no_report:
        return
    from edgetl import api

    try:
        page = api.report(root)
    except EdgetlError as error:
        click.echo(f"warning: the report was not refreshed: {error}", err=True)
        return
    click.echo(f"report: {page.path}")


def finish_bench(report, outputs: dict, gate_values: dict, run: Path | None = None, no_report: bool = False) -> None:
    """The bench table and its files; the run's page refreshed; the gates, which fail the command (exit 1)."""
    from edgetl.benchmark.gates import Gates, failed_gates
    from edgetl.benchmark.report import format_table, write_outputs

    click.echo(format_table(report, outputs.pop("wide"), *table_layout()))
    for path in write_outputs(report, **outputs):
        click.echo(f"written {path}")
    if run is not None:
        refresh_report(run, no_report)
    problems = report.errors + failed_gates(report.rows, Gates(**gate_values))
    for line in problems:
        click.echo(f"Error: {line}" if line in report.errors else f"FAILED {line}", err=True)
    if problems:
        sys.exit(1)


def terminate_as_interrupt() -> None:
    """SIGTERM (a `kill`, a service manager, a CI timeout) ends a command as Ctrl-C does, through its `finally`
    blocks: temporaries are removed and a file is never left half-committed. Only the main thread may install a
    handler; elsewhere (an embedding program's thread) the handler stays as it was."""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
