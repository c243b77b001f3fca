"""The page as a person sees it, in headless Chromium (Debian's `chromium`; `make test` installs it where it can):
it renders, logs no error, requests nothing outside itself, is not blank, sorts its tables, reads without
JavaScript, shows the flipped images exports.json lists, and hostile names run nothing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edgetl.reporting.page import write_report
from edgetl.reporting.thumbnails import THUMBNAIL_PIXELS
from edgetl.run import RunDir
from tests.reporting.chromium import Browser, LoadedPage, find_chromium
from tests.reporting.conftest import make_run
from tests.reporting.test_page import HOSTILE_CLASSES, hostile_file

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium here: apt-get install chromium (`make test` installs it when run as root with apt-get)",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    started = Browser(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    yield started
    started.close()


def only_the_file(page: LoadedPage, url: str) -> list[str]:
    """Requests other than the page itself and its inlined data: none is allowed."""
    return [request for request in page.requests if request != url and not request.startswith("data:")]


def test_the_page_renders_without_errors_or_requests_and_shows_every_flipped_image(synthetic_run, browser, tmp_path):
    url = write_report(synthetic_run.path).path.as_uri()
    page = LoadedPage(browser, url)
    assert page.console_errors == []
    assert url in page.requests and only_the_file(page, url) == []
    expected = [image["file"] for r in RunDir(synthetic_run.path).read_exports() for image in r["flipped_images"]]
    shown = page.evaluate("Array.from(document.querySelectorAll('#flipped [data-file]'), e => e.dataset.file)")
    assert sorted(shown) == sorted(expected)
    thumbnails = page.evaluate(
        "Array.from(document.querySelectorAll('#flipped [data-file] .thumb'), e => "
        "[e.getBoundingClientRect().width, getComputedStyle(e).backgroundImage.slice(0, 27)])"
    )
    assert len(thumbnails) == len(expected)
    assert all(width >= THUMBNAIL_PIXELS and image == 'url("data:image/jpeg;base64' for width, image in thumbnails)
    png = page.screenshot()
    (tmp_path / "report.png").write_bytes(png)
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    assert grey.shape[1] == 1280 and grey.shape[0] > 2000
    assert grey.std() > 20  # text, charts and thumbnails, not an empty page
    colours = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 500


def test_the_sort_script_runs_under_the_pages_content_security_policy(synthetic_run, browser):
    url = write_report(synthetic_run.path).path.as_uri()
    page = LoadedPage(browser, url)
    column = "Array.from(document.querySelectorAll('#bench tbody tr'), r => r.cells[6].textContent)"
    before = page.evaluate(column)
    page.evaluate("document.querySelectorAll('#bench thead th button')[6].click()")
    after = page.evaluate(column)
    assert sorted(before, key=float) == after != before
    page.evaluate("document.querySelectorAll('#bench thead th button')[6].click()")
    assert page.evaluate(column) == sorted(before, key=float, reverse=True)
    assert page.console_errors == []


def test_the_page_reads_without_javascript(synthetic_run, browser):
    url = write_report(synthetic_run.path).path.as_uri()
    page = LoadedPage(browser, url, scripts=False)
    text = page.evaluate("document.body.innerText")  # DevTools evaluates even where the page may not run scripts
    for heading in ("Dataset", "Training", "Exports", "Flipped images", "Benchmarks"):
        assert heading in text
    assert page.evaluate("document.querySelectorAll('th button').length") == 0  # the script did not run...
    assert page.evaluate("document.querySelectorAll('#flipped .thumb').length") > 0  # ...and nothing is missing
    assert only_the_file(page, url) == []


def test_hostile_names_run_nothing_in_the_browser(tmp_path, browser):
    synthetic = make_run(tmp_path, class_names=HOSTILE_CLASSES, per_class=3, file_names=hostile_file)
    url = write_report(synthetic.path).path.as_uri()
    page = LoadedPage(browser, url)
    assert page.dialogs == [] and page.console_errors == [] and only_the_file(page, url) == []
    assert page.evaluate("document.scripts.length") == 1
    text = page.evaluate("document.getElementById('dataset').innerText")
    assert HOSTILE_CLASSES[0] in text
    assert sorted(
        page.evaluate("Array.from(document.querySelectorAll('#flipped [data-file]'), e => e.dataset.file)")
    ) == sorted(f for files in synthetic.flipped.values() for f in files)
