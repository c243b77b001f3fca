"""The sections of the page, one function each: a section is returned when the run holds its data, else None."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgetl.benchmark.gates import is_keras
from edgetl.data.split import SUBSETS
from edgetl.exporting.verify import CONFIDENT_PROBABILITY
from edgetl.reporting.html import Cell, escape, facts, is_number, note, number, percent, table, text
from edgetl.reporting.load import RunView
from edgetl.reporting.svg import Point, Series, line_chart, scatter
from edgetl.reporting.thumbnails import Thumbnails

# Sample thumbnails per class in the dataset section, and the classes that get a row of them: a glance at the
# data, not a copy of it.
SAMPLES_PER_CLASS = 6
MOST_SAMPLE_CLASSES = 50
# Thumbnails in one gallery (Keras' mistakes, one file's flipped images), the most telling first; the rest are
# named in a note, so a run with thousands of test images still gives a page a browser opens at once.
MOST_GALLERY_IMAGES = 400
# Above this many classes a confusion matrix is too large to read as a table.
MOST_MATRIX_CLASSES = 60


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    body: str


def _dict(value: object) -> dict:
    """`value` if a run file holds a JSON object there, else nothing: a field of the wrong type shows as absent."""
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _gallery(cards: list[str], total: int, what: str) -> str:
    more = note(f"{total - len(cards)} more {what} not shown (the page shows the first {len(cards)})")
    return f'<div class="gallery">{"".join(cards)}</div>' + (more if total > len(cards) else "")


def _pairs(top: object) -> list[tuple[str, float]]:
    """The [class name, probability] pairs of a recorded top-k; entries of any other shape are left out."""
    if not isinstance(top, list):
        return []
    return [(str(e[0]), float(e[1])) for e in top if isinstance(e, list) and len(e) == 2 and is_number(e[1])]


def _top_list(top: object, true_label: str | None, title: str) -> str:
    """A top-k list: class name, probability and a bar; the true class is marked."""
    rows = []
    for name, probability in _pairs(top):
        mark = ' class="true"' if true_label is not None and name == true_label else ""
        width = max(0.0, min(100.0, 100 * probability))
        rows.append(
            f"<li{mark}><span class=name>{escape(name)}</span> <span class=p>{probability:.3f}</span>"
            f'<span class=bar style="width:{width:.0f}%"></span></li>'
        )
    return f'<div class="top"><b>{escape(title)}</b><ol>{"".join(rows)}</ol></div>'


def _image_card(thumbs: Thumbnails, file: str, label: str | None, tops: list[tuple[str, list]]) -> str:
    name = "/".join(Path(file).parts[-2:])  # the class folder tells apart files of the same name
    truth = f"<div>true: <b>{escape(label)}</b></div>" if label is not None else "<div>no label</div>"
    lists = "".join(_top_list(top, label, title) for title, top in tops)
    return (
        f'<div class="card image" data-file="{escape(file)}">{thumbs.tag(file, label or "")}'
        f'<div class="caption"><div class="file" title="{escape(file)}">{escape(name)}</div>{truth}</div>'
        f'<div class="tops">{lists}</div></div>'
    )


# -- dataset ------------------------------------------------------------------------------------------------


def dataset_section(view: RunView, thumbs: Thumbnails) -> Section | None:
    split = view.split
    if split is None:
        return None
    names = split.class_names
    counts = {subset: Counter(example.label for example in split.subset(subset)) for subset in SUBSETS}
    rows = [
        [
            text(name),
            *(number(counts[subset][label], "d") for subset in SUBSETS),
            number(sum(counts[s][label] for s in SUBSETS), "d"),
        ]
        for label, name in enumerate(names)
    ]
    totals = [text("all"), *(number(sum(counts[s].values()), "d") for s in SUBSETS)]
    totals.append(number(sum(len(split.subset(s)) for s in SUBSETS), "d"))
    parts = [
        facts(
            [
                ("classes", len(names)),
                ("layout", (view.metrics or {}).get("layout")),
                ("images from", split.root),
            ]
        ),
        table(["class", *SUBSETS, "total"], rows, [totals]),
    ]
    parts.append("<h3>Samples</h3>")
    shown = names[:MOST_SAMPLE_CLASSES]
    by_class: dict[int, list] = {}
    for example in [*split.train, *split.validation, *split.test]:
        if len(by_class.setdefault(example.label, [])) < SAMPLES_PER_CLASS:
            by_class[example.label].append(example)
    sample_rows = []
    for label, name in enumerate(shown):
        tags = "".join(thumbs.tag(str(example.path), name) for example in by_class.get(label, []))
        sample_rows.append(f'<div class="samples"><span class="label">{escape(name)}</span>{tags}</div>')
    parts.append("".join(sample_rows))
    if len(names) > len(shown):
        parts.append(note(f"samples of the first {len(shown)} of {len(names)} classes"))
    skipped = _list((view.metrics or {}).get("skipped"))
    if skipped:
        items = "".join(f"<li>{escape(line)}</li>" for line in skipped)
        parts.append(f"<details><summary>{len(skipped)} file(s) skipped: could not be read</summary><ul>{items}</ul>")
        parts.append("</details>")
    return Section("dataset", "Dataset", "".join(parts))


# -- training -----------------------------------------------------------------------------------------------


def _curves(history: dict, metric: str) -> str:
    series, dividers, offset = [], [], 0
    for position, (stage, rows) in enumerate(_dict(history).items()):
        values = rows.get(metric) if isinstance(rows, dict) else None
        if not isinstance(values, list) or not values or not all(is_number(v) for v in values):
            continue
        xs = list(range(offset + 1, offset + len(values) + 1))
        if offset:
            dividers.append(offset + 0.5)
        dashed = position > 0
        series.append(Series(f"{stage} train", xs, [float(v) for v in values], dashed, 0))
        validation = rows.get(f"val_{metric}")
        if isinstance(validation, list) and len(validation) == len(values) and all(map(is_number, validation)):
            series.append(Series(f"{stage} validation", xs, [float(v) for v in validation], dashed, 1))
        offset += len(values)
    return line_chart(series, metric, "epoch", metric, dividers)


def training_section(view: RunView, thumbs: Thumbnails) -> Section | None:
    if view.history is None and view.metrics is None:
        return None
    parts = []
    if view.history:
        charts = "".join(_curves(view.history, metric) for metric in ("loss", "accuracy"))
        parts.append(f'<div class="charts">{charts}</div>')
    metrics = view.metrics or {}
    if metrics:
        epochs = _dict(metrics.get("epochs"))
        seconds = _dict(metrics.get("stage_seconds"))
        rows = [
            [text(stage), number(epochs.get(stage), "d"), number(seconds.get(stage), ".1f")]
            for stage in dict.fromkeys([*epochs, *seconds])
            if epochs.get(stage) or seconds.get(stage)
        ]
        parts.append(
            facts(
                [
                    ("test accuracy", _fmt(metrics.get("test_accuracy"))),
                    ("test loss", _fmt(metrics.get("test_loss"))),
                    ("macro F1", _fmt(metrics.get("macro_f1"))),
                    ("weighted F1", _fmt(metrics.get("weighted_f1"))),
                    ("decoded images kept in", metrics.get("cache")),
                    ("stage 1 on cached features", _yes_no(metrics.get("feature_cache"))),
                ]
            )
        )
        if rows:
            parts.append(table(["stage", "epochs", "seconds"], rows, sortable=False))
    if view.config:
        pairs = [(key, value) for key, value in view.config.items() if value is not None]
        parts.append(f"<details><summary>training configuration (config.json)</summary>{facts(pairs)}</details>")
    return Section("training", "Training", "".join(parts))


def _yes_no(value: object) -> object:
    return ("yes" if value else "no") if isinstance(value, bool) else value


def _fmt(value: object) -> str | None:
    return f"{value:.4f}" if isinstance(value, float) else None if value is None else str(value)


# -- evaluation ---------------------------------------------------------------------------------------------


def _confusion_matrix(images: list[dict], names: list[str]) -> str:
    index = {name: position for position, name in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for image in images:
        true, predicted = index.get(image.get("label")), index.get(_top1(image.get("top")))
        if true is not None and predicted is not None:
            matrix[true][predicted] += 1
    head = "".join(f'<th class="col"><span>{escape(name)}</span></th>' for name in names)
    rows = []
    for true, name in enumerate(names):
        total = sum(matrix[true]) or 1
        cells = []
        for predicted, count in enumerate(matrix[true]):
            share = count / total
            kind = "hit" if predicted == true else "miss"
            colour = "0,114,178" if predicted == true else "213,94,0"
            style = f' style="background:rgba({colour},{0.15 + 0.75 * share:.3f})"' if count else ""
            title = escape(f"true {name}, predicted {names[predicted]}: {count}")
            cells.append(f'<td class="{kind}"{style} title="{title}">{count or ""}</td>')
        rows.append(f"<tr><th>{escape(name)}</th>{''.join(cells)}</tr>")
    return (
        '<div class="scroll"><table class="matrix"><caption>rows: true class; columns: Keras\' prediction '
        f"(test images)</caption><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _top1(top: object) -> str | None:
    pairs = _pairs(top)
    return pairs[0][0] if pairs else None


def _confidence(top: object) -> float:
    pairs = _pairs(top)
    return pairs[0][1] if pairs else 0.0


def evaluation_section(view: RunView, thumbs: Thumbnails) -> Section | None:
    report, predictions = view.classification_report, view.test_predictions
    if report is None and predictions is None:
        return None
    names = view.class_names
    parts = []
    images = [image for image in _list(_dict(predictions).get("images")) if isinstance(image, dict)]
    if images and len(names) <= MOST_MATRIX_CLASSES:
        parts.append("<h3>Confusion matrix</h3>" + _confusion_matrix(images, names))
    elif images:
        parts.append(note(f"{len(names)} classes: the confusion matrix is left out (over {MOST_MATRIX_CLASSES})"))
    if report:
        rows, footer = [], []
        for name, scores in report.items():
            if not isinstance(scores, dict):
                continue
            cells = [
                text(name),
                number(scores.get("precision")),
                number(scores.get("recall")),
                number(scores.get("f1-score")),
                number(scores.get("support"), ".0f"),
            ]
            (footer if name in ("macro avg", "weighted avg", "micro avg") else rows).append(cells)
        parts.append("<h3>Per class</h3>" + table(["class", "precision", "recall", "F1", "support"], rows, footer))
    if predictions is not None:
        wrong = [image for image in images if _top1(image.get("top")) != image.get("label")]
        wrong.sort(key=lambda image: -_confidence(image.get("top")))
        parts.append(f"<h3>Test images Keras gets wrong ({len(wrong)} of {len(images)})</h3>")
        parts.append(note("most confident mistakes first; the true class is marked in the top-3"))
        cards = [
            _image_card(thumbs, str(image.get("file")), image.get("label"), [("Keras", _list(image.get("top")))])
            for image in wrong[:MOST_GALLERY_IMAGES]
        ]
        parts.append(_gallery(cards, len(wrong), "mistakes"))
    else:
        parts.append(note(view.missing_predictions or "Keras' test predictions are not in this run"))
    return Section("evaluation", "Evaluation (Keras, test split)", "".join(parts))


# -- exports ------------------------------------------------------------------------------------------------


def _passed(attempt: dict) -> str:
    """An int8 attempt's verdict; one stopped once it could not settle (exporting/int8.py) says after how many
    images, since its figures are of those."""
    if attempt.get("passed") is None:
        return f"stopped after {attempt.get('images')} images"
    return "yes" if attempt.get("passed") else "no"


def _size(size_bytes: object) -> str:
    return f"{size_bytes / 2**20:.2f} MB" if is_number(size_bytes) else "-"


def _export_card(record: dict) -> str:
    passed = record.get("passed")
    state = "passed" if passed else "FAILED"
    confident = record.get("confident_agreement")
    headline = facts(
        [
            ("file", record.get("path")),
            ("size", _size(record.get("size_bytes"))),
            ("input / output", f"{record.get('input_dtype', '-')} / {record.get('output_dtype', '-')}"),
            ("int8 op share", _pct(record.get("int8_op_share"))),
            ("ops", record.get("operators")),
            (
                "agreement with Keras",
                f"{_pct(record.get('agreement'))} on {record.get('images')} images "
                f"(gate {_pct(record.get('min_agreement'))}: {state})",
            ),
            (
                f"on confident images (Keras ≥ {CONFIDENT_PROBABILITY})",
                None if confident is None else f"{_pct(confident)} of {record.get('confident_images')}",
            ),
            ("top-1 (Keras)", _pair(record.get("top1"), record.get("keras_top1"))),
            (
                "largest / mean probability difference",
                _pair(record.get("max_probability_diff"), record.get("mean_probability_diff")),
            ),
            ("quantised by", record.get("quantizer")),
            ("recipe kept", record.get("recipe")),
            ("calibration images", record.get("calibration_images") or None),
            ("runs on", ", ".join(map(str, _list(record.get("runtimes")))) or None),
            ("made for (int8 ONNX)", record.get("target") or None),
            ("results differ on", ", ".join(map(str, _list(record.get("saturates_on")))) or None),
        ]
    )
    parts = [headline]
    places = [where for where in _list(record.get("verified_on")) if isinstance(where, dict)]
    if places:
        rows = [
            [
                text(where.get("runtime")),
                text(where.get("options")),
                text(where.get("cpu")),
                text(where.get("host") or "here"),
                number(where.get("images"), "d"),
                percent(where.get("agreement"), 2),
                percent(where.get("confident_agreement"), 2),
                number(where.get("top1")),
            ]
            for where in places
        ]
        headers = ["runtime", "options", "CPU", "host", "images", "agreement", "confident", "top-1"]
        summary = f"verified on {len(places)} runtime(s) and machine(s)"
        parts.append(f'<details><summary>{summary}</summary><div class="scroll">{table(headers, rows)}</div></details>')
    for problem in _list(record.get("problems")):
        parts.append(f'<p class="problem">{escape(problem)}</p>')
    float_layers = _list(record.get("float_layers"))
    if float_layers:
        items = "".join(f"<li>{escape(layer)}</li>" for layer in float_layers)
        parts.append(f"<p>layers kept in float:</p><ul>{items}</ul>")
    float_ops = _dict(record.get("float_ops"))
    if float_ops and record.get("int8_op_share"):  # in a float file every op is a float op: nothing to say
        parts.append(f"<p>ops left in float: {escape(', '.join(f'{op} x{n}' for op, n in float_ops.items()))}</p>")
    change_by_class = record.get("per_class_accuracy_change")
    changes = {k: v for k, v in change_by_class.items() if v} if isinstance(change_by_class, dict) else {}
    if changes:
        rows = [[text(name), number(100 * v if is_number(v) else v, "+.1f")] for name, v in changes.items()]
        parts.append(
            "<details><summary>per-class accuracy change (points; classes that changed)</summary>"
            + table(["class", "change"], rows)
            + "</details>"
        )
    attempts = [a for a in _list(record.get("attempts")) if isinstance(a, dict)]
    if attempts:
        rows = [
            [
                text(a.get("recipe")),
                percent(a.get("agreement"), 2),
                percent(a.get("confident_agreement"), 2),
                Cell(escape(_size(a.get("size_bytes"))), a.get("size_bytes")),
                number(a.get("seconds"), ".1f"),
                text(_passed(a)),
                _float_layers(_list(a.get("float_layers"))),
            ]
            for a in attempts
        ]
        headers = ["recipe", "agreement", "confident", "size", "seconds", "passed", "float layers"]
        summary = f"recipe ladder: {len(attempts)} attempt(s)"
        parts.append(
            f'<details open><summary>{summary}</summary><div class="scroll">{table(headers, rows)}</div></details>'
        )
    flipped = _list(record.get("flipped_images")) or _list(record.get("flipped_files"))
    if flipped:
        parts.append(f'<p><a href="#flipped-{escape(record.get("format"))}">{len(flipped)} flipped image(s)</a></p>')
    css = "card export" + ("" if passed else " failed")
    return f'<div class="{css}"><h3>{escape(record.get("format"))} <small>{state}</small></h3>{"".join(parts)}</div>'


def _float_layers(layers: list) -> Cell:
    """How many layers an attempt kept in float, their names in the tooltip (they can be long graph paths)."""
    if not layers:
        return text("-", 0)
    names = escape("\n".join(map(str, layers)))
    return Cell(f'<span title="{names}">{len(layers)}</span>', len(layers))


def _pct(value: object) -> str | None:
    return f"{100 * value:.2f}%" if is_number(value) else None


def _pair(first: object, second: object) -> str | None:
    if first is None and second is None:
        return None
    return " / ".join("-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in (first, second))


def exports_section(view: RunView, thumbs: Thumbnails) -> Section | None:
    if not view.exports:
        return None
    rows = [
        [
            Cell(f'<a href="#export-{escape(r.get("format"))}">{escape(r.get("format"))}</a>', str(r.get("format"))),
            Cell(escape(_size(r.get("size_bytes"))), r.get("size_bytes")),
            text(f"{r.get('input_dtype', '-')}/{r.get('output_dtype', '-')}"),
            percent(r.get("int8_op_share")),
            percent(r.get("agreement"), 2),
            percent(r.get("confident_agreement"), 2),
            number(len(_list(r.get("flipped_images")) or _list(r.get("flipped_files"))), "d"),
            text("passed" if r.get("passed") else "FAILED"),
        ]
        for r in view.exports
    ]
    headers = ["format", "size", "I/O", "int8 ops", "agreement", "confident", "flipped", "gate"]
    cards = "".join(f'<div id="export-{escape(r.get("format"))}">{_export_card(r)}</div>' for r in view.exports)
    return Section("exports", "Exports", table(headers, rows) + f'<div class="cards">{cards}</div>')


def flipped_section(view: RunView, thumbs: Thumbnails) -> Section | None:
    records = [r for r in view.exports if r.get("flipped_images") or r.get("flipped_files")]
    if not view.exports:
        return None
    parts = [
        note(
            "the images each file was verified on (a run's test split) whose top-1 differs from Keras', the images "
            "Keras was surest of first; the true class is marked"
        )
    ]
    if not records:
        parts.append(note("no exported file changed the top-1 class of any image"))
    for record in records:
        name = str(record.get("format"))
        images = [image for image in _list(record.get("flipped_images")) if isinstance(image, dict)]
        count = len(images) or len(_list(record.get("flipped_files")))
        heading = f"{name}: {count} flipped of {record.get('images')} images"
        parts.append(f'<h3 id="flipped-{escape(name)}">{escape(heading)}</h3>')
        if images:
            images.sort(key=lambda image: -_confidence(image.get("keras_top")))
            cards = [
                _image_card(
                    thumbs,
                    str(image.get("file")),
                    image.get("label"),
                    [("Keras", _list(image.get("keras_top"))), (name, _list(image.get("export_top")))],
                )
                for image in images[:MOST_GALLERY_IMAGES]
            ]
            parts.append(_gallery(cards, len(images), "flipped images"))
        else:
            files = [str(file) for file in _list(record.get("flipped_files"))]
            parts.append(note("this export predates top-3 records: export again to see Keras' and the file's top-3"))
            cards = [_image_card(thumbs, file, None, []) for file in files[:MOST_GALLERY_IMAGES]]
            parts.append(_gallery(cards, len(files), "flipped images"))
    return Section("flipped", "Flipped images", "".join(parts))


# -- benchmarks ---------------------------------------------------------------------------------------------


def bench_section(view: RunView, thumbs: Thumbnails) -> Section | None:
    rows = view.bench_rows
    if not rows:
        return None
    points = []
    for row in rows:
        threads = "auto" if row.threads is None else str(row.threads)
        host = row.host or "local"
        label = f"{row.format}, {threads} thread(s), {host}: top-1 {row.top1:.4f}, p50 {row.latency.p50:.3f} ms"
        machine = f"{host} ({row.device})" if row.device else host
        points.append(Point(row.latency.p50, row.top1, label, row.format, machine))
    chart = scatter(points, "top-1 against batch-1 latency", "p50 latency (ms)", "top-1 (test split)")
    table_rows = [
        [
            text(row.host or "local"),
            text(row.format),
            text("auto" if row.threads is None else row.threads, -1 if row.threads is None else row.threads),
            Cell(escape(_size(row.size_bytes)), row.size_bytes),
            number(row.top1),
            number(None if is_keras(row) else row.agreement),
            number(row.latency.p50, ".3f"),
            number(row.latency.p90, ".3f"),
            number(row.throughput_ips, ".0f"),
            text(f"{row.runtime}{' (emulated)' if row.emulated else ''}"),
        ]
        for row in rows
    ]
    headers = ["host", "format", "threads", "size", "top-1", "agreement", "p50 ms", "p90 ms", "img/s", "runtime"]
    sources = ", ".join(path.name for path in view.bench_files)
    body = f'<div class="charts">{chart}</div>' + table(headers, table_rows) + note(f"from {sources}")
    return Section("bench", "Benchmarks", body)


SECTIONS = (dataset_section, training_section, evaluation_section, exports_section, flipped_section, bench_section)
