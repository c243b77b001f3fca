"""The page: sections assembled with their style and sort script into one HTML file that needs nothing else.

It makes no request: images are inlined thumbnails, style and script are inline, and its Content Security Policy
forbids anything else, so a name that slipped past escaping could not load or run anything either.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from edgetl import __version__
from edgetl.errors import WriteError
from edgetl.files import atomic_write
from edgetl.reporting.html import escape
from edgetl.reporting.load import RunView, load_run
from edgetl.reporting.sections import SECTIONS, Section
from edgetl.reporting.thumbnails import THUMBNAIL_PIXELS, Thumbnails
from edgetl.training.reports import TEST_PREDICTIONS

log = logging.getLogger(__name__)

PAGE_NAME = "index.html"

# Sorts a table by the clicked column (numbers as numbers), from the cells' data-v values. Without it the tables
# are plain tables: the page is whole without JavaScript.
SORT_SCRIPT = """
(function () {
  var NUMBER = /^-?\\d+(\\.\\d+)?(e[-+]?\\d+)?$/i;
  function key(cell) {
    var raw = cell ? (cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent) : "";
    return NUMBER.test(raw.trim()) ? parseFloat(raw) : raw;
  }
  function compare(x, y) {
    if (typeof x === "number" && typeof y === "number") return x - y;
    return String(x).localeCompare(String(y));
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, column) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var order = compare(key(a.cells[column]), key(b.cells[column]));
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
"""

STYLE = f"""
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }}
header, main, footer {{ max-width: 1200px; margin: 0 auto; padding: 0 16px; }}
header {{ padding-top: 12px; }}
h1 {{ font-size: 22px; margin: 8px 0; }}
h2 {{ font-size: 18px; border-bottom: 2px solid #0072b2; padding-bottom: 2px; margin-top: 28px; }}
h3 {{ font-size: 15px; margin: 16px 0 6px; }}
nav a {{ margin-right: 12px; }}
section {{ margin-bottom: 24px; }}
table {{ border-collapse: collapse; margin: 6px 0; background: #fff; }}
th, td {{ border: 1px solid #ddd; padding: 2px 8px; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
.card p, .card li {{ overflow-wrap: anywhere; }}
tfoot td {{ font-weight: bold; }}
th button {{ font: inherit; font-weight: bold; border: 0; background: none; padding: 0; cursor: pointer; }}
th[aria-sort=ascending] button::after {{ content: " \\25b2"; }}
th[aria-sort=descending] button::after {{ content: " \\25bc"; }}
.matrix td {{ text-align: center; min-width: 22px; }}
.matrix th.col span {{ writing-mode: vertical-rl; transform: rotate(180deg); }}
.scroll {{ overflow-x: auto; }}
dl.facts {{ display: grid; grid-template-columns: max-content auto; gap: 2px 12px; margin: 6px 0; }}
dl.facts dt {{ color: #555; }}
dl.facts dd {{ margin: 0; overflow-wrap: anywhere; }}
.note {{ color: #555; font-style: italic; }}
.problem {{ color: #b00; font-weight: bold; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 16px; }}
figure.chart {{ margin: 0; background: #fff; border: 1px solid #ddd; padding: 4px; }}
svg text {{ font-size: 11px; fill: #333; }}
svg text.title {{ font-size: 13px; font-weight: bold; }}
svg .axis {{ stroke: #333; }}
svg .grid {{ stroke: #eee; }}
svg .divider {{ stroke: #888; stroke-dasharray: 4 4; }}
.legend {{ max-width: 460px; font-size: 12px; }}
.legend .key {{ margin-right: 10px; white-space: nowrap; }}
.legend i {{ display: inline-block; width: 18px; margin-right: 4px; vertical-align: middle; }}
.cards {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 12px; }}
.card dl.facts {{ grid-template-columns: 15em 1fr; }}
.card {{ background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 8px; }}
.card.failed {{ border-color: #b00; }}
.card h3 {{ margin-top: 0; }}
.gallery {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 8px; }}
.card.image {{ display: grid; grid-template-columns: {THUMBNAIL_PIXELS}px 1fr; gap: 4px 8px; }}
.card.image .tops {{ grid-column: 1 / -1; display: flex; gap: 8px; }}
.caption {{ min-width: 0; }}
.caption .file {{ overflow: hidden; text-overflow: ellipsis; white-space: nowrap; font-family: monospace; }}
.top {{ flex: 1; min-width: 0; }}
.top ol {{ margin: 2px 0; padding-left: 18px; }}
.top li {{ position: relative; overflow-wrap: anywhere; }}
.top li.true .name {{ font-weight: bold; text-decoration: underline; }}
.top .p {{ color: #555; font-variant-numeric: tabular-nums; }}
.top .bar {{ display: block; height: 3px; background: #0072b2; }}
.thumb {{ display: inline-block; width: {THUMBNAIL_PIXELS}px; height: {THUMBNAIL_PIXELS}px; margin: 1px;
  background-size: cover; vertical-align: middle; border: 1px solid #ccc; }}
.thumb.missing {{ text-align: center; line-height: {THUMBNAIL_PIXELS}px; color: #999; background: #eee; }}
.samples .label {{ display: inline-block; min-width: 120px; max-width: 200px; overflow-wrap: anywhere; }}
footer {{ color: #777; font-size: 12px; padding-bottom: 24px; }}
"""


@dataclass(frozen=True)
class ReportPage:
    """What `edgetl report` wrote."""

    path: Path
    size_bytes: int
    seconds: float  # reading the run, making thumbnails and writing the page
    sections: list[str]  # the titles of the sections shown
    thumbnails: int  # distinct images inlined


def _script_hash(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def _summary(view: RunView) -> str:
    model = view.preprocessing or {}
    size = model.get("input_size")
    pieces = [
        str(model.get("backbone")) if model.get("backbone") else None,
        f"{size[0]}x{size[1]} px" if isinstance(size, list) and len(size) == 2 else None,
        f"{len(view.class_names)} classes" if view.class_names else None,
        f"Keras test accuracy {view.metrics['test_accuracy']:.4f}"
        if isinstance((view.metrics or {}).get("test_accuracy"), float)
        else None,
        f"{len(view.exports)} exported file(s)" if view.exports else None,
    ]
    return escape(" · ".join(piece for piece in pieces if piece))


def render(view: RunView, sections: list[Section], thumbs: Thumbnails) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.anchor}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections)
    unreadable = ""
    if thumbs.unreadable:
        items = "".join(f"<li>{escape(line)}</li>" for line in thumbs.unreadable)
        summary = f"{len(thumbs.unreadable)} image(s) could not be shown"
        unreadable = f"<details><summary>{summary}</summary><ul>{items}</ul></details>"
    policy = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{_script_hash(SORT_SCRIPT)}'; base-uri 'none'; form-action 'none'"
    )
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = f"edgetl report: {view.root.resolve().name}"
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        f"<title>{escape(title)}</title><style>{STYLE}\n{thumbs.css()}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{_summary(view)}</p><nav>{nav}</nav></header>"
        f"<main>{body}</main>"
        f"<footer>{unreadable}<p>{escape(str(view.root))} · written by edgetl {escape(__version__)} on "
        f"{escape(generated)}</p></footer><script>{SORT_SCRIPT}</script></body></html>\n"
    )


def keras_test_predictions(view: RunView) -> None:
    """A run trained before train wrote report/test_predictions.json: compute Keras' test predictions once and
    keep them in the run, where TensorFlow and the model are at hand; else say why the section is incomplete."""
    from edgetl.training.reports import predictions_json

    run = view.run
    if view.split is None or view.classification_report is None or view.test_predictions is not None:
        return
    if not run.model.is_file() or importlib.util.find_spec("tensorflow") is None:
        view.missing_predictions = (
            f"{TEST_PREDICTIONS} is not in this run, and computing it needs TensorFlow and {run.model.name}: "
            "Keras' mistakes and the confusion matrix are left out"
        )
        return
    import json

    from edgetl.data.pipeline import decode_subset
    from edgetl.exporting.keras_passes import keras_probabilities

    metadata = run.read_metadata()
    test = decode_subset(view.split.test, metadata.input_size[0], metadata.resize, "test images")
    model = run.load_model()
    probabilities = keras_probabilities(model, test.pixels)
    files = [str(example.path) for example in test.examples]
    document = predictions_json(files, test.labels, probabilities, view.split.class_names)
    atomic_write(run.report_dir / TEST_PREDICTIONS, document)
    view.test_predictions = json.loads(document)


def write_report(run_path: Path) -> ReportPage:
    """Write RUN/report/index.html from what the run (or export folder) `run_path` holds."""
    started = time.perf_counter()
    view = load_run(Path(run_path))
    folder = view.run.report_dir
    if folder.is_symlink():
        raise WriteError(f"{folder}: is a symbolic link; the report is written only into a real folder of the run")
    keras_test_predictions(view)
    thumbs = Thumbnails()
    sections = [section for make in SECTIONS if (section := make(view, thumbs)) is not None]
    page = render(view, sections, thumbs)
    path = folder / PAGE_NAME
    # atomic_write renames over the old page: a symbolic link put there is replaced, never written through.
    atomic_write(path, page)
    size = len(page.encode("utf-8"))
    seconds = time.perf_counter() - started
    log.info("%s: %d bytes, %d thumbnails, %.2f s", path, size, thumbs.count, seconds)
    return ReportPage(path, size, seconds, [s.title for s in sections], thumbs.count)
