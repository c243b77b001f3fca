"""The page as a file: self-contained, hostile names escaped, within its size budget, written atomically and never
through a symbolic link; the command, the refresh hook and the Python API."""

from __future__ import annotations

import re

import pytest

from edgetl import terminal
from edgetl.errors import WriteError
from edgetl.reporting.page import ReportPage, write_report
from tests.helpers import invoke
from tests.reporting.conftest import make_run
from tests.reporting.parse import Page

HOSTILE_CLASSES = [
    "</script><script>alert(1)</script>",
    "a\"b'c<img src=x onerror=alert(2)>",
    "tab\tand & co",
]  # a newline in a class name is refused when split.json is read (edgetl.schemas)


def hostile_file(label: int, index: int) -> str:
    return f"<script>alert({label})\"q'\n{index}.png"


def test_hostile_class_and_file_names_are_text_not_markup(tmp_path):
    synthetic = make_run(tmp_path, class_names=HOSTILE_CLASSES, per_class=3, file_names=hostile_file)
    page = Page(write_report(synthetic.path).path)
    source = page.source
    # The only script is the page's own sort script, and no element carries an event handler or loads anything.
    assert len(re.findall(r"<script", source, re.IGNORECASE)) == 1
    assert page.tags("img") == []
    assert not [a for _, a, _ in page.elements if any(name.startswith("on") for name in a)]
    assert not [a for _, a, _ in page.elements if "src" in a or "href" in a and not a["href"].startswith("#")]
    for name in HOSTILE_CLASSES:
        assert name not in source  # never raw...
        assert name in page.text("dataset")  # ...but shown as text, as it is
    # File names with markup, quotes and newlines survive as attribute values, exactly.
    flipped = sorted(f for files in synthetic.flipped.values() for f in files)
    assert sorted(page.files("flipped")) == flipped
    assert all("\n" in f and "<script>" in f for f in flipped)


def test_page_makes_no_request_and_says_so_in_its_content_security_policy(synthetic_run):
    source = write_report(synthetic_run.path).path.read_text()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', source).group(1)
    assert (
        "default-src 'none'" in policy
        and "img-src data:" in policy
        and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    )
    urls = re.findall(r"(?:src|href)\s*=\s*\"([^\"]*)\"", source) + re.findall(r"url\(([^)]*)\)", source)
    assert urls and all(url.startswith(("#", "data:image/jpeg;base64,")) for url in urls)
    assert "http://" not in source and "https://" not in source


def test_500_test_images_stay_under_5_mb_as_thumbnails(tmp_path):
    synthetic = make_run(tmp_path, class_names=[f"class {i}" for i in range(10)], per_class=50, noise=True,
                         wrong_every=2, flip_every=2)  # fmt: skip
    written = write_report(synthetic.path)
    originals = sum(p.stat().st_size for p in (tmp_path / "data").rglob("*.png"))
    assert len(synthetic.test_files) == 500
    assert written.size_bytes < 5 * 2**20 < originals
    page = Page(written.path)
    assert len(page.files("flipped")) == sum(len(files) for files in synthetic.flipped.values())
    # An image shown in several places (a mistake flipped by both files) is inlined once.
    assert written.thumbnails == len({*page.files("evaluation"), *page.files("flipped")}) + 10 * 6


def test_the_page_replaces_a_symbolic_link_and_never_writes_through_it(synthetic_run, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    page = synthetic_run.path / "report" / "index.html"
    page.symlink_to(outside)
    write_report(synthetic_run.path)
    assert outside.read_text() == "keep me"
    assert not page.is_symlink() and page.read_text().startswith("<!doctype html>")
    assert [p.name for p in page.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_report_folder_that_is_a_symbolic_link_is_refused(synthetic_run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = synthetic_run.path / "report"
    for child in report.iterdir():
        child.rename(elsewhere / child.name)
    report.rmdir()
    report.symlink_to(elsewhere)
    with pytest.raises(WriteError, match="is a symbolic link"):
        write_report(synthetic_run.path)
    assert not (elsewhere / "index.html").exists()


def test_report_command_prints_the_path(synthetic_run):
    result = invoke("report", synthetic_run.path)
    assert result.exit_code == 0, result.output
    assert result.output == f"{synthetic_run.path / 'report' / 'index.html'}\n"


def test_report_command_on_bad_input_says_one_line_and_exits_1(tmp_path):
    (tmp_path / "exports.json").write_text("{not json")
    for target in (tmp_path / "absent", tmp_path):
        result = invoke("report", target)
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and str(target) in lines[0]
        assert "Traceback" not in result.output


def test_refresh_hook_writes_the_page_skips_with_no_report_and_only_warns_on_a_damaged_run(
    synthetic_run, capsys, tmp_path
):
    page = synthetic_run.path / "report" / "index.html"
    terminal.refresh_report(synthetic_run.path, no_report=True)
    assert not page.exists() and capsys.readouterr().out == ""
    terminal.refresh_report(synthetic_run.path, no_report=False)
    assert page.is_file() and capsys.readouterr().out == f"report: {page}\n"
    (synthetic_run.path / "history.json").write_text("[")
    terminal.refresh_report(synthetic_run.path, no_report=False)  # the command's work is done: no exception
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("warning: the report was not refreshed: ")


def test_no_report_is_an_option_of_train_export_and_bench():
    for args in (["train", "--help"], ["export", "--help"], ["bench", "run", "--help"]):
        assert "--no-report" in invoke(*args).output


def test_python_api_report_returns_the_page_and_stays_callable(synthetic_run):
    import edgetl.reporting.page  # noqa: F401 - importing the subpackage must not hide the function

    written = edgetl.report(synthetic_run.path)
    assert isinstance(written, ReportPage) and written.path.is_file() and written.seconds > 0
    assert written.sections[-1] == "Benchmarks"


def test_report_imports_no_tensorflow_where_the_run_has_what_it_needs(synthetic_run):
    from tests.helpers import BLOCKER, run_python

    result = run_python(
        BLOCKER
        + f"""
import sys
from edgetl.cli import main
sys.argv = ["edgetl", "report", {str(synthetic_run.path)!r}]
try:
    main()
except SystemExit as done:
    assert not done.code, done.code
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "matplotlib", "sklearn")))
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(synthetic_run.path / "report" / "index.html"), "[]"]
