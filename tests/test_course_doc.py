"""COURSE.md, the course around the notebooks: a glossary with every required term defined once,
numbered references with links, and links that resolve; the notebooks' files in course order,
and every link between notebooks resolving. Plain text checks, no TensorFlow.

The checker is a few small functions that return a list of problems (empty when the text is
fine); the last test runs them on a planted bad text to show that each problem is reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cxr_utils import registry
from cxr_utils.reporting.coursedoc import glossary, references, section, sections

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "COURSE.md"

REQUIRED_SECTIONS = (
    "Audience and prerequisites",
    "Syllabus",
    "Student set-up",
    "Grading and points",
    "Session plans",
    "Glossary",
    "References",
)
REQUIRED_TERMS = (
    "AUC", "ROC curve", "sensitivity", "specificity", "bootstrap", "group bootstrap", "confidence interval",
    "Grad-CAM", "occlusion", "pHash", "dHash", "Hamming distance", "group split", "data leakage",
    "shortcut learning", "external test set", "inference mode", "bfloat16", "float32", "precision policy",
    "profile", "screening", "final fit", "kept epoch", "epoch 0", "eligible", "set-up", "clean test",
    "feature extraction", "frozen backbone", "fine-tuning", "linear probe", "papermill", "run folder",
    "result.json", "manifest",
)  # fmt: skip
# The syllabus follows the course order, which is the file order.
COURSE_ORDER = tuple(entry.stem for entry in registry.NOTEBOOKS)  # the registry lists them in course order
MIN_REFERENCES = 8

LINK = re.compile(r"\]\(([^)\s]+)\)")
URL = re.compile(r"https?://\S+")


# --------------------------------------------------------------------------- the checker


def normalise(term: str) -> str:
    return re.sub(r"\s+", " ", term.replace("*", "").replace("`", "")).strip().lower()


def glossary_problems(text: str, required: tuple[str, ...] = REQUIRED_TERMS) -> list[str]:
    """A missing glossary, duplicated terms, empty definitions and required terms not defined."""
    entries = glossary(text)
    if not entries:
        return ["no glossary table"]
    problems, seen = [], set()
    for term, definition in entries:
        key = normalise(term)
        if key in seen:
            problems.append(f"glossary: '{term}' is defined more than once")
        seen.add(key)
        if not definition:
            problems.append(f"glossary: '{term}' has an empty definition")
    problems += [f"glossary: required term '{term}' is missing" for term in required if normalise(term) not in seen]
    return problems


def reference_problems(text: str, minimum: int = MIN_REFERENCES) -> list[str]:
    """Too few numbered references, and entries without an http(s) link."""
    entries = references(text)
    problems = [f"references: {len(entries)} numbered entries, at least {minimum} expected"] * (len(entries) < minimum)
    return problems + [f"references: no link in '{entry[:60]}'" for entry in entries if not URL.search(entry)]


def local_links(text: str) -> list[str]:
    """Every Markdown link target that is a path in the repository (no URL, no bare anchor)."""
    targets = (match.split("#", 1)[0] for match in LINK.findall(text))
    return [t for t in targets if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def broken_links(text: str, base: Path) -> list[str]:
    """Local links (notebooks included) that do not resolve to a file or folder under ``base``."""
    missing = dict.fromkeys(target for target in local_links(text) if not (base / target).exists())
    return [f"link '{target}' does not resolve" for target in missing]


def notebook_order(text: str) -> list[str]:
    """The notebooks the syllabus links, by file stem, in order of first appearance."""
    order: list[str] = []
    for target in local_links(section(text, "Syllabus") or ""):
        stem = Path(target).stem
        if target.endswith(".ipynb") and stem not in order:
            order.append(stem)
    return order


# --------------------------------------------------------------------------- COURSE.md


@pytest.fixture(scope="module")
def course_text() -> str:
    return COURSE.read_text(encoding="utf-8")


def test_every_required_section_is_there(course_text):
    headings = list(sections(course_text))
    missing = [name for name in REQUIRED_SECTIONS if not any(h.startswith(name) for h in headings)]
    assert not missing, f"COURSE.md lacks the sections {missing} (has {headings})"


def test_the_glossary_defines_every_required_term_exactly_once(course_text):
    assert glossary_problems(course_text) == []
    assert len(glossary(course_text)) >= len(REQUIRED_TERMS)


def test_the_references_are_numbered_and_each_has_a_link(course_text):
    assert reference_problems(course_text) == []
    numbers = [int(entry.split(".", 1)[0]) for entry in references(course_text)]
    assert numbers == list(range(1, len(numbers) + 1)), f"references numbered {numbers}"


def test_every_link_resolves_and_every_notebook_is_linked(course_text):
    assert broken_links(course_text, COURSE.parent) == []
    linked = {Path(t).name for t in local_links(course_text) if t.endswith(".ipynb")}
    notebooks = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert notebooks and notebooks <= linked, f"notebooks not linked from COURSE.md: {sorted(notebooks - linked)}"


def test_the_syllabus_follows_the_course_order(course_text):
    assert notebook_order(course_text) == list(COURSE_ORDER)


def test_the_readme_points_to_the_course_right_under_its_title():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ")
    assert "[COURSE.md](COURSE.md)" in "\n".join(lines[1:4])


# --------------------------------------------------------------------------- the checker can fail

PLANTED = """# A bad course

## 2. Syllabus

1. [02 · Custom CNN](notebooks/02_custom_cnn.ipynb), then [01 · Data merge](notebooks/01_data_merge.ipynb)
2. [99 · Gone](notebooks/99_gone.ipynb)

## 6. Glossary

| Term | Definition |
|---|---|
| AUC | Area under the ROC curve. |
| **auc** | Defined a second time, differently. |
| pHash | |

## 7. References

1. A paper with a link. https://doi.org/10.1000/example
2. A paper cited without any link.
   (its second line has none either)
"""


def test_the_checker_reports_each_planted_problem(tmp_path):
    (tmp_path / "notebooks").mkdir()
    for stem in ("01_data_merge", "02_custom_cnn"):
        (tmp_path / "notebooks" / f"{stem}.ipynb").write_text("{}")

    problems = glossary_problems(PLANTED)
    assert "glossary: '**auc**' is defined more than once" in problems
    assert "glossary: 'pHash' has an empty definition" in problems
    assert "glossary: required term 'dHash' is missing" in problems
    assert "glossary: required term 'AUC' is missing" not in problems

    problems = reference_problems(PLANTED)
    assert "references: 2 numbered entries, at least 8 expected" in problems
    assert any(p.startswith("references: no link in '2. A paper cited without any link.") for p in problems)
    assert not any("A paper with a link" in p for p in problems)

    assert broken_links(PLANTED, tmp_path) == ["link 'notebooks/99_gone.ipynb' does not resolve"]
    assert notebook_order(PLANTED) != list(COURSE_ORDER)
    assert glossary_problems("# no glossary here\n") == ["no glossary table"]


# --------------------------------------------------------------------------- the notebooks themselves


def test_file_order_is_course_order():
    files = sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))
    assert files == list(COURSE_ORDER)
    assert [int(stem[:2]) for stem in COURSE_ORDER] == list(range(1, len(COURSE_ORDER) + 1))


def notebook_link_problems(path: Path) -> list[str]:
    """Links in a notebook's Markdown cells that do not resolve (web links and anchors aside)."""
    import json

    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")
    return [
        f"{path.name}: {target}"
        for target in LINK.findall(text)
        if not target.startswith(("http://", "https://", "#", "mailto:"))
        and not (path.parent / target.split("#")[0]).exists()
    ]


def test_every_link_between_notebooks_resolves(tmp_path):
    problems = [p for path in sorted((ROOT / "notebooks").glob("*.ipynb")) for p in notebook_link_problems(path)]
    assert problems == []
    planted = tmp_path / "nb.ipynb"
    planted.write_text('{"cells": [{"cell_type": "markdown", "source": ["next: [06](06_setup.ipynb)"]}]}')
    assert notebook_link_problems(planted) == ["nb.ipynb: 06_setup.ipynb"]


def test_old_run_folders_of_renamed_notebooks_are_named_by_the_main_job(tmp_path, capsys):
    from cxr_utils.runs import pipeline

    assert set(registry.RENAMED) & {entry.stem for entry in registry.NOTEBOOKS} == set()
    (tmp_path / "06_shortcuts" / "shortcuts").mkdir(parents=True)
    (tmp_path / "05_shortcuts").mkdir()  # today's folder: no note for it
    pipeline.note_renamed_folders(tmp_path)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "06_shortcuts is now 05_shortcuts" in printed[0]
    assert "reruns into" in printed[0] and str(tmp_path / "05_shortcuts") in printed[0]
