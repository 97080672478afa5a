"""Export the executed report notebook as ``report.html`` without code, with figures/ and tables/."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import config, registry
from ..runs import results

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
    executed_notebook: str | Path, report_dir: str | Path, figures: list[Path] = (), tables: list[Path] = ()
) -> Path:
    """The executed report notebook as ``report.html`` without code, plus figures/ and tables/."""
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    settings = Config()
    settings.TagRemovePreprocessor.remove_cell_tags = {"remove_cell"}
    settings.TagRemovePreprocessor.enabled = True
    exporter = HTMLExporter(config=settings, exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(nbformat.read(str(executed_notebook), as_version=4))
    html = html.replace("</body>", SELF_CHECK + "</body>")
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


def export_run(run_name: str, dest: str | Path, out: str | Path | None = None) -> Path:
    """Export a completed 05_report run to ``dest``: report.html, figures/ and tables/."""
    folder = registry.REPORT.run_folder(run_name, out)
    result = results.read_result(folder)
    if not result or result.get("status") != "complete":
        raise config.ConfigError(f"{folder} holds no complete report run; run {registry.REPORT.path.name} first")
    effective = result["effective"]
    comparison = registry.COMPARISON.run_folder(effective["comparison_run"], out)
    data = registry.DATA_MERGE.run_folder(effective["data_run"], out)
    figures = sorted((comparison / "figures").glob("*.png")) + sorted((data / "figures").glob("*.png"))
    tables = sorted((comparison / "tables").glob("*.*")) + [data / "exclusions.csv", data / "cross_source_groups.csv"]
    return export_html(folder / "notebook.ipynb", dest, figures, [t for t in tables if t.is_file()])
