"""Teaching with the notebooks: otter-grader's student edition, autograder and grading.

The notebooks in ``notebooks/`` are the instructor's masters in otter-grader's format (otter
assign, notebook format v1). Each exercise is a question block: the task, a solution block, and
tests. Public tests (0 points) check the form of an answer and may be run by the student
(``grader.check("exercise_1")``); hidden tests hold all the points and check the answer itself.
Questionnaire questions are manual questions whose model answers sit in solution blocks. In the
master, solutions and tests are ordinary cells, so ``pytest --nbval`` proves every test passes on
the solution.

``make student`` (:func:`student_edition`) runs ``otter assign`` on each notebook: the student
edition goes to ``student/`` (solutions and hidden tests removed, outputs cleared) and the
autograder, the instructor's key, to ``<output root>/grading/`` (never into ``student/``).
``make grade NB=...`` (:func:`grade`) executes a filled-in student notebook with its autograder
and returns the points per exercise.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import config

BOUNDARY = re.compile(r"^#\s*(BEGIN|END)\s+(QUESTION|SOLUTION|TESTS|PROMPT)\b")
CONFIG_CELL = "# ASSIGNMENT CONFIG"
# every master notebook ends with this raw cell: no PDFs, no export, tests in the notebook's metadata
ASSIGNMENT_CONFIG = f"""{CONFIG_CELL}
# otter-grader reads this cell: `make student` turns this instructor notebook into the student
# edition (solutions and hidden tests removed) and an autograder (COURSE.md, section 4).
init_cell: true
check_all_cell: false
export_cell: false
run_tests: false
save_environment: false
generate: true
tests:
  files: false"""
KEY_SUFFIX = "-autograder.zip"


def master_notebooks() -> list[Path]:
    """The instructor's notebooks in course order."""
    return sorted(config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def key_folder() -> Path:
    """Where the autograders (the instructor's key) go: ``<output root>/grading/``."""
    return config.output_root() / "grading"


def block_boundary(cell: Any) -> tuple[str, str] | None:
    """``("BEGIN", "SOLUTION")`` and the like for otter's raw block cells, else None."""
    if cell.cell_type != "raw":
        return None
    found = BOUNDARY.match(cell.source.strip())
    return (found.group(1), found.group(2)) if found else None


def student_view(nb: Any) -> Any:
    """The notebook as a student sees it, outputs kept (for pages of executed notebooks): otter's
    raw cells, solution blocks and test blocks removed."""
    kept, hiding = [], []
    for cell in nb.cells:
        edge = block_boundary(cell)
        if edge and edge[1] in ("SOLUTION", "TESTS") and edge[0] == "BEGIN":
            hiding.append(edge[1])
        elif edge and edge[1] in ("SOLUTION", "TESTS"):
            hiding.pop()
        elif not hiding and not edge and not (cell.cell_type == "raw" and cell.source.startswith(CONFIG_CELL)):
            kept.append(cell)
    nb.cells = kept
    return nb


def assign(notebook: Path, workdir: Path) -> tuple[Path, Path]:
    """Run ``otter assign`` on one master notebook into ``workdir``; return the student edition's
    notebook and the autograder zip."""
    from otter.assign import main as otter_assign

    with contextlib.redirect_stdout(io.StringIO()):
        otter_assign(str(notebook), str(workdir), no_pdfs=True, no_run_tests=True)
    zips = sorted((workdir / "autograder").glob("*.zip"))
    if len(zips) != 1:
        raise config.ConfigError(f"otter assign wrote {len(zips)} autograders for {notebook.name}; expected 1")
    return workdir / "student" / notebook.name, zips[0]


def student_edition(
    dest: str | Path, key_dir: str | Path | None = None, notebooks: list[Path] | None = None
) -> list[Path]:
    """Write the student edition of the notebooks into ``dest`` and each notebook's autograder
    into ``key_dir`` (default ``<output root>/grading/``) as ``<notebook>-autograder.zip``.
    Returns the student notebooks written."""
    import nbformat

    dest, key_dir = Path(dest), Path(key_dir) if key_dir else key_folder()
    dest.mkdir(parents=True, exist_ok=True)
    key_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks or master_notebooks():
        with tempfile.TemporaryDirectory() as tmp:
            student, key = assign(path, Path(tmp))
            nb = nbformat.read(str(student), as_version=4)
            nb.metadata["edition"] = "student"
            nbformat.write(nb, str(dest / path.name))
            shutil.copyfile(key, key_dir / f"{path.stem}{KEY_SUFFIX}")
        written.append(dest / path.name)
    return written


def manual_questions(notebook: Path) -> list[str]:
    """The names of a master notebook's manual questions (graded by the instructor)."""
    import nbformat
    import yaml

    names = []
    for cell in nbformat.read(str(notebook), as_version=4).cells:
        if block_boundary(cell) == ("BEGIN", "QUESTION"):
            settings = yaml.safe_load(cell.source.split("\n", 1)[1]) or {}
            if settings.get("manual"):
                names.append(str(settings["name"]))
    return names


def grade(submission: str | Path, key_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Execute a filled-in student notebook with its autograder; return one row per autograded
    question (name, points, possible) and one per manual question (points None)."""
    from otter.run import main as otter_run

    submission = Path(submission).resolve()
    key = (Path(key_dir) if key_dir else key_folder()) / f"{submission.stem}{KEY_SUFFIX}"
    if not submission.is_file():
        raise config.ConfigError(f"no notebook to grade at {submission}")
    if not key.is_file():
        raise config.ConfigError(f"no autograder for {submission.name} at {key}: run `make student` first")
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        results = otter_run(str(submission), autograder=str(key), output_dir=tmp, no_logo=True)
    if results.catastrophic_error:
        raise config.ConfigError(f"{submission.name} could not be graded: {results.catastrophic_error}")
    rows = [
        {"question": name, "points": results.get_score(name), "possible": results.get_result(name).possible}
        for name in results.test_files
    ]
    master = config.NOTEBOOKS_DIR / submission.name
    manual = manual_questions(master) if master.is_file() else []
    return rows + [{"question": name, "points": None, "possible": None} for name in manual]
