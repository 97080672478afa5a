"""The printed report as a reader sees it: layout.print_defects finds each defect planted in a page
printed with headless Chromium (a near-empty page, 5 pt table text, a table too wide for the page, a
header broken inside a word, an interval over two lines) and nothing in a report printed with the
export's own style; tables.split_columns splits a wide table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import nbformat
import numpy as np
import pandas as pd
import pytest

from cxr_utils.analysis import evaluation
from cxr_utils.reporting import document, export, layout, plots, tables

NBSP = "\u00a0"
PROSE = "The model is scored on held-out images of every source, and the scores are compared. " * 6


def printed(tmp_path, body: str, style: str = "") -> tuple:
    """A page of ``body`` (A4, the report's margins, a new page per h2; plus ``style``) printed to
    PDF: the PDF and the HTML."""
    pytest.importorskip("pdfplumber", reason="pdfplumber reads the PDF back (pip install -e '.[dev]')")
    if export.chromium() is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium where apt-get can)")
    html = tmp_path / "page.html"
    html.write_text(
        f"<html><head><meta charset='utf-8'><title>t</title><style>@page {{ size: A4; margin: 14mm 11mm; }}"
        f"body {{ font-size: 14px; }} h2 {{ break-before: page; font-size: 24px; }} {style}</style></head>"
        f"<body>{body}</body></html>"
    )
    return export.print_pdf(html), html


def table_html(header: list[str], rows: list[list[str]], attrs: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def test_a_near_empty_page_is_a_defect_unless_a_section_starts_next(tmp_path, capsys):
    pushed = f"<h2>1. Data</h2><p>One line.</p><p style='break-before: page'>{PROSE}</p><p>{PROSE}</p>"
    pdf, html = printed(tmp_path, pushed)
    defects = layout.print_defects(pdf, html)
    assert len(defects) == 1 and defects[0].startswith("page 1: near-empty"), defects
    assert export.check_print(pdf) == defects and "page.pdf: page 1: near-empty" in capsys.readouterr().out
    section_ends = f"<h2>1. Data</h2><p>One line.</p><h2>2. Methods</h2><p>{PROSE}</p>"
    pdf, html = printed(tmp_path, section_ends)
    assert layout.print_defects(pdf, html) == []


def test_table_text_below_7_pt_is_a_defect(tmp_path):
    small = table_html(["run", "auc", "accuracy"], [["run01", "0.812", "0.790"], ["run02", "0.745", "0.701"]])
    pdf, html = printed(tmp_path, f"<h2>1. Results</h2><p>{PROSE}</p>{small}", "table { font-size: 5pt; }")
    defects = layout.print_defects(pdf, html)
    assert len(defects) == 1 and "words below 7 pt (smallest 5.0 pt" in defects[0], defects


def test_a_table_too_wide_shrinks_every_page_below_7_pt(tmp_path):
    wide = table_html([f"m{k}" for k in range(12)], [[f"0.812{NBSP}[0.770,{NBSP}0.851]"] * 12])
    pdf, html = printed(tmp_path, f"<h2>1. Results</h2><p>{PROSE}</p>{wide}", "table { font-size: 7.5pt; }")
    defects = layout.print_defects(pdf, html)
    assert defects and all("below 7 pt" in d for d in defects), defects


def test_a_header_broken_inside_a_word_is_a_defect(tmp_path):
    narrow = table_html(["run", "learning rate", "optimizer"], [["run01", "1e-04", "adam"]])
    style = "th { width: 22px; max-width: 22px; overflow-wrap: anywhere; }"
    pdf, html = printed(tmp_path, f"<h2>1. Methods</h2><p>{PROSE}</p>{narrow}", style)
    broken = [d for d in layout.print_defects(pdf, html) if "header word" in d]
    assert any("'learning' broken across lines" in d for d in broken), broken
    assert any("'optimizer'" in d for d in broken), broken


def test_an_interval_over_two_lines_is_a_defect(tmp_path):
    narrow = table_html(["model", "auc"], [["custom", "0.812 [0.770, 0.851]"], ["transfer", "0.931 [0.903, 0.955]"]])
    pdf, html = printed(
        tmp_path, f"<h2>1. Results</h2><p>{PROSE}</p>{narrow}", "td { max-width: 40px; padding: 1px 3px; }"
    )
    defects = layout.print_defects(pdf, html)
    assert len(defects) == 1 and "2 intervals broken across lines" in defects[0], defects


def captured(monkeypatch) -> list[str]:
    """The HTML that Document displays, collected instead of shown."""
    shown: list[str] = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(getattr(obj, "data", str(obj))))
    return shown


def test_the_report_style_prints_a_long_wide_table_and_intervals_cleanly(tmp_path, monkeypatch):
    """A section that a long table ends (it flows over pages, its header repeated), a 16-column
    table of rates and epochs, intervals split over two tables, and a figure: no defect."""
    rng = np.random.default_rng(0)
    runs = [f"run{k:02d}" for k in range(1, 61)]
    params = pd.DataFrame({"kind": "custom", "run": runs, "learning_rate": 1e-4, "fine_tune_learning_rate": 1e-5})
    params = params.assign(batch_size=50, optimizer="RMSprop", epochs=10, patience=4, image_size=64, filter=3)
    params = params.assign(activation_output="sigmoid", degenerate=False, val_auc=rng.random(60))
    params = params.assign(epoch0_val_auc=rng.random(60), best_epoch=7, seconds_per_epoch=3.5)
    metrics = ["auc", "accuracy", "sensitivity", "specificity", "f1", "ppv", "npv", "brier"]
    intervals = pd.DataFrame({"model": ["custom run02", "transfer xception"], "split": "external", "n": 44})
    intervals = intervals.assign(**{m: document.interval_text(0.812, 0.770, 0.851) for m in metrics})
    figure = tmp_path / "calibration.png"
    y = (rng.random(200) > 0.5).astype(int)
    calibration = evaluation.calibration(y, np.clip(y * 0.4 + rng.random(200) * 0.6, 0, 1))
    plots.calibration_curves({"custom run02": calibration}, "test split", path=figure)

    shown = captured(monkeypatch)
    doc = document.Document()
    doc.table(params, "Every screening run and its parameters.", scale="Profile default · 60 runs")
    parts = tables.split_columns(intervals, ["model", "split", "n"], max_columns=7)
    for k, part in enumerate(parts, start=1):
        doc.table(part.map(lambda v: v.replace(" ", NBSP) if isinstance(v, str) else v), f"Held-out metrics ({k}).")
    doc.figure(figure, "Calibration on the test split.", "Reliability curve", scale="Profile default · test split")
    assert len(parts) == 2 and len(params.columns) == 16

    notebook = nbformat.v4.new_notebook()
    output = nbformat.v4.new_code_cell("")
    output.outputs = [nbformat.v4.new_output("display_data", data={"text/html": h}) for h in shown[:1]]
    rest = nbformat.v4.new_code_cell("")
    rest.outputs = [nbformat.v4.new_output("display_data", data={"text/html": h}) for h in shown[1:]]
    notebook.cells = [
        nbformat.v4.new_markdown_cell(f"# A report\n\n## 1. Screening\n\n{PROSE}\n\n{PROSE}"),
        output,
        nbformat.v4.new_markdown_cell(f"## 2. Held-out data\n\n{PROSE}"),
        rest,
    ]
    nbformat.write(notebook, tmp_path / "report.ipynb")
    html = export.export_html(tmp_path / "report.ipynb", tmp_path / "out", figures=[figure])
    pytest.importorskip("pdfplumber", reason="pdfplumber reads the PDF back (pip install -e '.[dev]')")
    if export.chromium() is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium where apt-get can)")
    pdf = export.print_pdf(html)
    pages = layout.read_pages(pdf)
    assert len(pages) >= 3, "the long table flows over pages"
    defects = layout.print_defects(pdf, html)
    assert defects == [], "\n".join(defects)


def test_split_columns_repeats_the_keys_and_shares_the_rest_evenly():
    table = pd.DataFrame([range(9)], columns=["model", "split", *"abcdefg"])
    parts = tables.split_columns(table, ["model", "split"], max_columns=6)
    assert [list(p.columns) for p in parts] == [["model", "split", *"abcd"], ["model", "split", *"efg"]]
    assert [list(p.columns) for p in tables.split_columns(table, ["model"], max_columns=20)] == [list(table.columns)]
    with pytest.raises(ValueError, match="leaves no room"):
        tables.split_columns(table, ["model", "split"], max_columns=2)
    with pytest.raises(KeyError, match="seed"):
        tables.split_columns(table, ["seed"], max_columns=4)
