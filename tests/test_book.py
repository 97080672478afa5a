"""The course website: built by Jupyter Book from a build's executed notebooks, then opened page by
page in headless Chromium (Playwright driving Debian's browser): no console error, no failed or
outside request, every image loaded, every internal link resolving, no solution on any page,
search finding a glossary term. A planted broken image and link make the check fail.

The "build" here is made by the test: every notebook of the project with a figure and a text
output added, in a complete run folder with its ``result.json``, as papermill and the runner
leave them (executing the real main job would take minutes)."""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import io
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import nbformat
import pytest
from conftest import pattern

from cxr_utils import __main__ as cli
from cxr_utils import book, config, registry, results
from cxr_utils.course import student_view

CHROMIUM = Path("/usr/bin/chromium")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def figure_output(seed: int) -> dict:
    """A PNG display output, as a notebook's figure leaves it."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pattern(seed, 48)).save(buffer, format="PNG")
    return nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(buffer.getvalue()).decode()})


def fake_build(out: Path) -> None:
    """A complete run of every notebook (the predict example aside), with outputs, and a report."""
    for k, entry in enumerate(registry.NOTEBOOKS):
        if entry is registry.PREDICT:
            continue
        run = book.PREFERRED.get(entry.stem) or {"custom": "run04", "transfer": "xception"}[entry.kind]
        folder = entry.run_folder(run, out)
        folder.mkdir(parents=True)
        nb = nbformat.read(str(entry.path), as_version=4)
        shown = shown_ids(entry.path)
        code = [c for c in nb.cells if c.cell_type == "code" and c.id in shown]
        code[len(code) // 2].outputs = [
            figure_output(k),
            nbformat.v4.new_output("stream", text=f"output of {entry.stem}\n"),
        ]
        for cell in nb.cells:  # a solution's output, as the instructor's run leaves it
            if cell.cell_type == "code" and cell.id not in shown:
                cell.outputs = [nbformat.v4.new_output("stream", text="Exercise: verdict of the solution\n")]
        nbformat.write(nb, str(folder / book.EXECUTED))
        finished = f"2026-11-30T10:{k:02d}:00+00:00"
        record = {"status": "complete", "profile": "course", "run": run, "requested": {"run_name": run}}
        record["provenance"] = {"git_commit": COMMIT, "finished": finished}
        if entry is registry.COMPARISON:
            record["chosen"] = {"custom": "run04", "transfer": "xception"}
        results.write_json(folder / results.RESULT_FILE, record)
    (out / "report").mkdir()
    (out / "report" / "report.html").write_text("<html><body><h1>Report</h1></body></html>")
    (out / "report" / "report.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "outputs"
    fake_build(out)
    return book.build(out).parent


@contextlib.contextmanager
def served(folder: Path):
    """``folder`` on a loopback HTTP server for the block; yields its base URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield launched
        launched.close()


def page_problems(browser, url: str, site: Path, base: str) -> tuple[list[str], str]:
    """What is wrong with one page as a browser shows it, and the page's text."""
    problems: list[str] = []
    page = browser.new_page()
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    page.on("request", lambda r: problems.append(f"outside request: {r.url}") if not local(r.url, base) else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    unloaded = "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))"
    problems += [f"image not loaded: {src}" for src in page.eval_on_selector_all("img", unloaded)]
    for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
        target = urljoin(url, href)
        if local(target, base) and not target.startswith(("mailto:", "javascript:")):
            path = unquote(urlparse(target).path)
            path = Path(path) if target.startswith("file:") else site / path.removeprefix(urlparse(base).path)
            if not (path.is_file() or (path / "index.html").is_file()):
                problems.append(f"broken link: {href}")
    text = page.inner_text("body")
    page.close()
    return problems, text


def local(url: str, base: str) -> bool:
    return url.startswith((base, "data:", "blob:", "about:")) or (base.startswith("file:") and url.startswith("file:"))


def shown_ids(path: Path) -> set[str]:
    """The ids of the cells a student sees in a master notebook."""
    return {cell.id for cell in student_view(nbformat.read(str(path), as_version=4)).cells}


def solution_lines() -> set[str]:
    """Lines that only the instructor's solution and test blocks hold (long enough to be telling)."""
    solution, other = set(), set()
    for path in config.NOTEBOOKS_DIR.glob("*.ipynb"):
        shown = shown_ids(path)
        for cell in nbformat.read(str(path), as_version=4).cells:
            lines = {line.strip() for line in cell.source.splitlines() if len(line.strip()) >= 25}
            (other if cell.id in shown else solution).update(lines)
    return solution - other


def test_the_site_builds_and_every_page_is_clean_in_a_browser(site, browser):
    pages = book.pages_of(site)
    names = {p.relative_to(site).as_posix() for p in pages}
    assert {"COURSE.html", "README.html", "search.html"} <= names
    assert {f"notebooks/{entry.stem}.html" for entry in registry.NOTEBOOKS} <= names
    secrets = solution_lines()
    assert secrets, "the notebooks hold solution cells to look for"
    with served(site) as base:
        for path in pages:
            if path.name == "index.html":  # a redirect to the landing page
                assert 'url=COURSE.html"' in path.read_text()
                continue
            problems, text = page_problems(browser, base + path.relative_to(site).as_posix(), site, base)
            assert problems == [], path.name
            assert "Build: commit 0123456789ab · profile course · 2026-11-30" in text, path.name
            assert secrets.isdisjoint(line.strip() for line in text.splitlines()), path.name
            assert "verdict of the solution" not in text, path.name
            if path.parent.name == "notebooks" and path.stem != registry.PREDICT.stem:
                assert f"run folder outputs/{path.stem}/" in text, path.name  # the executed run named at its top
        problems, text = page_problems(browser, base + "notebooks/02_custom_cnn.html", site, base)
        assert "output of 02_custom_cnn" in text and "params file run04.yaml" in text.replace("`", "")
        search = browser.new_page()
        search.goto(base + "search.html?q=kept+epoch", wait_until="load")
        search.wait_for_selector("#search-results ul.search li", timeout=20_000)
        # Sphinx lists results one by one and writes the summary ("... matching the search query") last
        search.wait_for_function(
            "() => (document.querySelector('#search-results p.search-summary') || {}).innerText?.includes('matching')",
            timeout=20_000,
        )
        found = search.inner_text("#search-results")
        search.close()
        assert "COURSE" in found or "course" in found.lower()


def test_the_site_opens_from_the_file_system(site, browser):
    problems, text = page_problems(browser, (site / "notebooks" / "04_comparison.html").as_uri(), site, "file://")
    assert problems == [] and "output of 04_comparison" in text


def test_a_planted_broken_image_or_link_fails_the_check(site, browser, tmp_path):
    planted = tmp_path / "site"
    shutil.copytree(site, planted)
    page = planted / "COURSE.html"
    page.write_text(
        page.read_text().replace("</body>", '<img src="_static/missing.png"><a href="nowhere.html">x</a></body>')
    )
    with served(planted) as base:
        problems, _ = page_problems(browser, base + "COURSE.html", planted, base)
    assert "image not loaded: _static/missing.png" in problems
    assert "broken link: nowhere.html" in problems
    assert any(p.startswith("HTTP 404:") for p in problems)


def test_without_a_build_it_says_run_make_report_first(tmp_path, capsys):
    assert cli.main(["book", "--out-root", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "run `make report` first" in err and str(tmp_path / "empty" / "07_report") in err
