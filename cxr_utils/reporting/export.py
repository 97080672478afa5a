"""Export the executed report notebook as ``report.html`` without code, with figures/ and tables/,
and print it to ``report.pdf`` with headless Chromium (A4, a page break before each section)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import config, registry, results
from . import layout

TITLE = (
    "COVID-19 vs non-COVID chest radiographs with a custom CNN and frozen ImageNet backbones: "
    "a replication of a student study with patient- and duplicate-grouped splits"
)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

PAGE = (
    f"@page {{ size: A4; margin: {layout.MARGIN_MM[0]}mm {layout.MARGIN_MM[1]}mm; }}\n"
    f"@media print {{ figure.report-figure img {{ max-height: {layout.FIGURE_HEIGHT_MM}mm; }} }}\n"
)
# In print: table text at 7.5 pt in a narrow face (7 pt in wide tables: split those with
# tables.split_columns), headers that wrap between words only, tables that flow over pages with their
# header repeated (rows whole), figures whole and at most FIGURE_HEIGHT_MM high, a scale line kept
# with what follows it, the output area as wide as the page. layout.print_defects checks the result.
STYLE = (
    """
<style>
body { max-width: 1150px; margin: 0 auto; padding: 0 12px; }
.jp-RenderedHTMLCommon table { font-size: 12px; display: block; max-width: 100%; overflow-x: auto; }
.jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { white-space: normal; word-break: normal;
  overflow-wrap: normal; hyphens: none; max-width: 28em; padding: 2px 6px; }
.jp-RenderedHTMLCommon thead { display: table-header-group; }
figure.report-figure { margin: 0.8em 0 1.2em 0; }
figure.report-figure img { max-width: 100%; height: auto; }
figcaption, .table-caption, .table-note { font-size: 13px; color: #333; }
.scale-line { font-size: 12px; color: #444; border-left: 3px solid #2e86c1; padding-left: 6px; }
@media print {
  body { max-width: none; padding: 0; }
  .jp-Notebook, .jp-Cell, .jp-RenderedHTMLCommon { padding-left: 0; padding-right: 0; }
  .jp-OutputArea-child, .jp-OutputArea-output { display: block; break-inside: auto; overflow: visible !important; }
  .jp-OutputPrompt, .jp-InputPrompt { display: none; }
  h2 { break-before: page; }
  h3, .scale-line, .table-caption, .jp-OutputArea-child:has(.scale-line) { break-after: avoid; }
  .report-table, table { break-inside: auto; overflow: visible !important; }
  tr, figure.report-figure, .scale-line { break-inside: avoid; }
  .jp-RenderedHTMLCommon table { display: table; font-size: 7.5pt;
    font-family: "Liberation Sans Narrow", "Arial Narrow", "DejaVu Sans Condensed", sans-serif; }
  .report-table.wide table { font-size: 7pt; }
  .jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { padding: 1px 3px; max-width: 20em; }
}
"""
    + PAGE
    + "</style>\n"
)

SELF_CHECK = """
<script>
// Self-check used by the render test: how many images loaded, how many sections have content.
window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", ok + "/" + imgs.length);
});
</script>
"""


def export_html(
    executed_notebook: str | Path,
    report_dir: str | Path,
    figures: list[Path] = (),
    tables: list[Path] = (),
    title: str = TITLE,
) -> Path:
    """The executed report notebook as ``report.html`` (titled ``title``) without code, plus
    figures/ and tables/."""
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    settings = Config()
    settings.TagRemovePreprocessor.remove_cell_tags = {"remove_cell"}
    settings.TagRemovePreprocessor.enabled = True
    exporter = HTMLExporter(  # raw cells (otter-grader's markers and settings) are for the course, not the report
        config=settings, exclude_input=True, exclude_raw=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    html, _ = exporter.from_notebook_node(
        nbformat.read(str(executed_notebook), as_version=4), resources={"metadata": {"name": title}}
    )
    html = html.replace("</head>", STYLE + "</head>").replace("</body>", SELF_CHECK + "</body>")
    target = report_dir / "report.html"
    target.write_text(html)
    for sub, files in (("figures", figures), ("tables", tables)):
        folder = report_dir / sub
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for path in files:
            shutil.copy2(path, folder / Path(path).name)
    return target


def export_run(run_name: str, dest: str | Path, out: str | Path | None = None, pdf: bool = True) -> Path:
    """Export a completed 07_report run to ``dest``: report.html (and report.pdf), with the
    figures and tables of every run the report reads (data merge, comparison, shortcuts,
    set-ups) and the figures the report run drew itself (the flow diagram)."""
    folder = registry.REPORT.run_folder(run_name, out)
    result = results.read_result(folder)
    if not result or result.get("status") != "complete":
        raise config.ConfigError(f"{folder} holds no complete report run; run {registry.REPORT.path.name} first")
    effective = result["effective"]
    sources = [registry.DATA_MERGE.run_folder(effective["data_run"], out)]
    for notebook, key in (
        (registry.COMPARISON, "comparison_run"),
        (registry.SHORTCUTS, "shortcuts_run"),
        (registry.SETUPS, "setups_run"),
    ):
        if effective.get(key):
            sources.append(notebook.run_folder(effective[key], out))
    figures = [f for source in (*sources, folder) for f in sorted((source / "figures").glob("*.png"))]
    tables = [t for source in sources[1:] for t in sorted((source / "tables").glob("*.*"))]
    tables += [sources[0] / "exclusions.csv", sources[0] / "cross_source_groups.csv"]
    html = export_html(folder / "notebook.ipynb", dest, figures, [t for t in tables if t.is_file()])
    if pdf and (printed := print_pdf(html)) is not None:
        check_print(printed)
    return html


def check_print(pdf: Path) -> list[str]:
    """What spoils the printed report (layout.print_defects), each printed on a line; none (and a
    message) where pdfplumber, a dev dependency, is missing."""
    try:
        defects = layout.print_defects(pdf)
    except ImportError:
        print(f"{pdf.name} not checked: pdfplumber is not installed (pip install -e '.[dev]')")
        return []
    for defect in defects:
        print(f"{pdf.name}: {defect}")
    return defects


def chromium() -> str | None:
    """The headless browser that prints the PDF (Debian's chromium), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def headless(browser: str, html_file: Path, args: list[str], timeout: int) -> subprocess.CompletedProcess:
    """Run headless Chromium on a local page with a throw-away profile and ``args`` (its action)."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, html_file.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def print_pdf(html_file: str | Path, pdf_file: str | Path | None = None) -> Path | None:
    """Print a report page to PDF with headless Chromium; None (and a message) where Chromium is
    missing, so the rest of the report still builds."""
    html_file = Path(html_file)
    pdf_file = Path(pdf_file) if pdf_file else html_file.with_suffix(".pdf")
    browser = chromium()
    if browser is None:
        print("report.pdf not printed: chromium is not installed (make report installs Debian's chromium)")
        return None
    done = headless(
        browser,
        html_file,
        ["--no-pdf-header-footer", "--virtual-time-budget=20000", f"--print-to-pdf={pdf_file}"],
        timeout=300,
    )
    if done.returncode != 0 or not pdf_file.is_file():
        raise RuntimeError(f"chromium could not print {html_file} to PDF: {done.stderr[-1000:]}")
    return pdf_file
