"""The course as a website: a Jupyter Book (1.x, Sphinx) of one build's executed notebooks.

``python -m cxr_utils book [--out-root outputs]`` (``make book``) takes, for each notebook in
course order, the papermill output of one representative run of the build (the configurations the
comparison chose, the analyses and the report the main job made), never executing anything.
Each page is the executed notebook as the student edition has it (otter's solution and test
blocks removed, :func:`cxr_utils.course.student_view`), headed by the params file and run folder it
came from. ``COURSE.md`` is the landing page. Every page carries a banner with the build's commit,
profile and date (read from the runs' ``result.json``) and links to the report (HTML and PDF),
which is copied into the site. The site is static and self-contained: Sphinx's own search, the
theme's bundled fonts and scripts, no math renderer or widget scripts fetched from elsewhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import config, registry, results
from .course import student_view
from .reporting import collect
from .runs import runner

EXECUTED = runner.EXECUTED_NOTEBOOK
SITE = ("_build", "html")
PAGES_DIR = "notebooks"
# the run each notebook's page shows, by notebook; None: the comparison's choice (02, 03)
PREFERRED = {
    registry.DATA_MERGE.stem: "default",
    registry.COMPARISON.stem: "comparison",
    registry.SHORTCUTS.stem: "shortcuts",
    registry.SETUPS.stem: "setups",
    registry.REPORT.stem: "report",
    registry.PREDICT.stem: "example",
}


class NoBuild(config.ConfigError):
    """There is no finished build to publish."""


@dataclass(frozen=True)
class Page:
    """One notebook's page: the executed run shown (None: the notebook as committed, not run)."""

    notebook: registry.Notebook
    folder: Path | None
    result: dict

    @property
    def source(self) -> Path:
        return self.folder / EXECUTED if self.folder else self.notebook.path


def chosen_runs(out: Path) -> dict[str, str]:
    """The screening runs the build's comparison chose, by notebook stem."""
    comparison = results.read_result(registry.COMPARISON.run_folder("comparison", out)) or {}
    chosen = comparison.get("chosen", {})
    return {registry.TRAINING[kind].stem: run for kind, run in chosen.items() if kind in registry.TRAINING}


def representative_pages(out: Path) -> list[Page]:
    """One page per notebook in course order: its preferred complete run, else the latest one."""
    chosen = chosen_runs(out)
    pages = []
    for entry in registry.NOTEBOOKS:
        complete = [
            folder
            for folder in collect.run_folders(entry, out)
            if results.is_complete(folder) and (folder / EXECUTED).is_file()
        ]
        preferred = [f for f in complete if f.name in (chosen.get(entry.stem), PREFERRED.get(entry.stem))]
        latest = sorted(complete, key=finished)
        folder = (preferred or latest[-1:] or [None])[0]
        pages.append(Page(entry, folder, results.read_result(folder) or {} if folder else {}))
    if not any(page.folder for page in pages if page.notebook is registry.REPORT):
        raise NoBuild(
            f"no finished build in {out} (looked for {registry.REPORT.runs_root(out)}/*/{EXECUTED} of a complete run): "
            "run `make report` first (or `make course`, then `make book OUT=outputs/course`)"
        )
    return pages


def finished(folder: Path) -> str:
    """When a run folder's run finished (ISO time; empty when not recorded)."""
    return str((results.read_result(folder) or {}).get("provenance", {}).get("finished") or "")


def provenance(pages: list[Page]) -> dict[str, str]:
    """The build's commit(s), profile(s) and date, from the shown runs' ``result.json``."""
    shown = [page.result for page in pages if page.folder]
    commits = sorted({short_commit(r) for r in shown})
    profiles = sorted({str(r.get("profile")) for r in shown})
    last = max(str(r.get("provenance", {}).get("finished") or "") for r in shown)
    return {"commit": ", ".join(commits), "profile": ", ".join(profiles), "date": last[:10]}


def short_commit(result: dict) -> str:
    """A run's commit, 12 characters, with ``-dirty`` kept when the tree differed from it."""
    commit = str(result.get("provenance", {}).get("git_commit", "unknown"))
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def page_header(page: Page, out: Path) -> str:
    """The Markdown cell above a page: which run it shows, from which params file."""
    if page.folder is None:
        return (
            f"*Not run in this build: the notebook `{page.notebook.path.name}` as committed, without outputs "
            "(the main job does not run it; see its own instructions).*"
        )
    requested = page.result.get("requested", {})
    params = f"`{requested['run_name']}.yaml`" if "run_name" in requested else "its params file"
    base = config.PROJECT_ROOT if page.folder.is_relative_to(config.PROJECT_ROOT) else out.parent
    relative = page.folder.relative_to(base) if page.folder.is_relative_to(base) else page.folder
    when = str(page.result.get("provenance", {}).get("finished") or "")[:16].replace("T", " ")
    return (
        f"*Executed run shown on this page: run `{page.folder.name}` (params file {params}, as effective "
        f"`{relative}/params.yaml`), run folder `{relative}/`, profile `{page.result.get('profile')}`, "
        f"commit `{short_commit(page.result)}`, finished {when} UTC.*"
    )


def student_page(page: Page, out: Path):
    """The executed notebook as the student edition has it, with the run header on top."""
    import nbformat

    nb = student_view(nbformat.read(str(page.source), as_version=4))
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if any(tag.startswith("remove") for tag in tags):  # hidden from the report's export, not from a course page
            cell.metadata["tags"] = [tag for tag in tags if not tag.startswith("remove")]
    title = next(c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("# "))
    heading, _, rest = title.source.partition("\n")
    title.source = f"{heading}\n\n{page_header(page, out)}\n{rest}"
    nb.metadata.pop("papermill", None)
    return nb


def write_sources(out: Path, src: Path) -> list[Page]:
    """Lay out the book's sources in ``src``: the landing page, the pages, the report, the config."""
    import nbformat

    pages = representative_pages(out)
    if src.exists():
        shutil.rmtree(src)
    (src / PAGES_DIR).mkdir(parents=True)
    shutil.copy(config.PROJECT_ROOT / "COURSE.md", src / "COURSE.md")
    shutil.copy(config.PROJECT_ROOT / "README.md", src / "README.md")
    for page in pages:
        nbformat.write(student_page(page, out), str(src / PAGES_DIR / page.notebook.path.name))
    report = registry.REPORT_DIR if out == config.output_root() else out / "report"  # where the pipeline exports
    (src / "_static").mkdir()
    write_favicon(src / "_static" / FAVICON)
    for name in ("report.html", "report.pdf"):
        if (report / name).is_file():
            shutil.copy(report / name, src / "_static" / name)
    stamp = provenance(pages)
    (src / "_templates").mkdir()
    (src / "_templates" / "build-and-report.html").write_text(sidebar(stamp, src))
    (src / "_config.yml").write_text(yaml.safe_dump(book_config(stamp), sort_keys=False))
    toc = {
        "format": "jb-book",
        "root": "COURSE",
        "chapters": [{"file": f"{PAGES_DIR}/{page.notebook.stem}"} for page in pages] + [{"file": "README"}],
    }
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return pages


SIDEBAR = """<div class="cxr-build" style="font-size: 0.85em; margin: 0.5em 0 1em 0;">
<p><strong>Build</strong>: commit COMMIT · profile PROFILE · DATE</p>
<p>REPORT</p>
</div>
"""


SIDEBARS = ["navbar-logo.html", "search-button-field.html", "build-and-report.html", "sbt-sidebar-nav.html"]


def sidebar(stamp: dict[str, str], src: Path) -> str:
    """The sidebar block on every page: the build's provenance and the report's links (made
    relative to each page by Sphinx's ``pathto``, so they work from a server and from the disk)."""
    links = " · ".join(
        f"<a href=\"{{{{ pathto('_static/{name}', 1) }}}}\">Report ({name.split('.')[1].upper()})</a>"
        for name in ("report.html", "report.pdf")
        if (src / "_static" / name).is_file()
    )
    return (
        SIDEBAR.replace("COMMIT", stamp["commit"])
        .replace("PROFILE", stamp["profile"])
        .replace("DATE", stamp["date"])
        .replace("REPORT", links or "no report was exported in this build")
    )


FAVICON = "favicon.png"


def write_favicon(path: Path) -> None:
    """A small icon of the site's own (else every browser asks the server for /favicon.ico)."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(40, 220, 32, dtype=np.uint8)
    Image.fromarray(np.add.outer(ramp, ramp[::-1]) // 2).save(path)


def book_config(stamp: dict[str, str]) -> dict:
    """Jupyter Book's ``_config.yml``: nothing executed, nothing fetched, provenance on every page."""
    return {
        "title": "cxr-covid: the course",
        "author": "the cxr-covid project",
        "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "parse": {"myst_enable_extensions": ["colon_fence", "deflist", "html_image", "linkify", "substitution"]},
        "html": {
            "announcement": f"Built from commit {stamp['commit']}, profile {stamp['profile']}, {stamp['date']}",
            "use_repository_button": False,
            "favicon": f"_static/{FAVICON}",
            "home_page_in_navbar": True,
        },
        "launch_buttons": {"thebe": False},
        "sphinx": {
            "config": {
                "html_show_copyright": False,
                "html_context": {"default_mode": "light"},
                "nb_ipywidgets_js": {},
                "templates_path": ["_templates"],
                "html_sidebars": {"**": SIDEBARS},
                "suppress_warnings": ["myst.header", "mystnb.unknown_mime_type"],
            }
        },
    }


def build(out: str | Path | None = None, dest: str | Path | None = None) -> Path:
    """Write the sources under ``dest`` (default ``<out>/book``) and build the site with Jupyter
    Book; returns the site's ``index.html``. Raises :class:`NoBuild` without a finished build."""
    out = Path(out).resolve() if out else config.output_root()
    dest = Path(dest).resolve() if dest else out / "book"
    src = dest / "src"
    write_sources(out, src)
    site = dest.joinpath(*SITE)
    if site.exists():
        shutil.rmtree(site)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(src), "--path-output", str(dest), "--all"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode or not (site / "index.html").is_file():
        raise RuntimeError(f"jupyter-book build of {src} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return site / "index.html"


def pages_of(site: Path) -> list[Path]:
    """Every HTML page of a built site (its search page included)."""
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)


def summary(site: Path) -> str:
    """ "12 pages, 9.4 MB" for a built site."""
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    return f"{len(pages_of(site))} pages, {size / 1e6:.1f} MB"


def main(out: str | None, dest: str | None) -> int:
    """``book``: build the site, print where it is and how to open it."""
    index = build(out, dest)
    print(f"site: {index} ({summary(index.parent)})")
    print(
        f"open it: python -m http.server --bind 127.0.0.1 --directory {index.parent} 8000, then http://127.0.0.1:8000/"
    )
    print(json.dumps({"pages": [str(p.relative_to(index.parent)) for p in pages_of(index.parent)]}))
    return 0
