"""The course layer: every notebook a lesson in otter-grader's format, a student edition that
leaks no answer, and grading that gives a blank nothing and the solutions full marks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from cxr_utils import course
from cxr_utils.__main__ import main as cli

NOTEBOOKS = course.master_notebooks()
TEST_CONFIG = re.compile(r'^"""\s*# BEGIN TEST CONFIG\n(.*?)"""\s*# END TEST CONFIG', re.S)


def raw(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_raw_cell(text)


def config_of_test(source: str) -> dict:
    found = TEST_CONFIG.match(source.strip())
    return (yaml.safe_load(found.group(1)) or {}) if found else {}


def questions(nb: nbformat.NotebookNode) -> list[dict]:
    """Each otter question of a master notebook: its settings, solution cells and test cells."""
    found, block = [], None
    for cell in nb.cells:
        edge = course.block_boundary(cell)
        if edge == ("BEGIN", "QUESTION"):
            found.append({"settings": yaml.safe_load(cell.source.split("\n", 1)[1]), "solution": [], "tests": []})
        elif edge and edge[1] in ("SOLUTION", "TESTS"):
            block = edge[1] if edge[0] == "BEGIN" else None
        elif block == "SOLUTION":
            found[-1]["solution"].append(cell)
        elif block == "TESTS":
            found[-1]["tests"].append(cell)
    return found


def secret_lines(cell: nbformat.NotebookNode) -> list[str]:
    """What otter takes out of a solution cell: a Markdown answer whole; of code, the lines between
    ``# BEGIN SOLUTION`` and ``# END SOLUTION`` and each line ending in ``# SOLUTION``."""
    if cell.cell_type == "markdown":
        return cell.source.splitlines()
    found, inside = [], False
    for line in cell.source.splitlines():
        marker = line.strip()
        if marker in ("# BEGIN SOLUTION", "# END SOLUTION"):
            inside = marker == "# BEGIN SOLUTION"
        elif inside or marker.endswith("# SOLUTION"):
            found.append(line.rsplit("# SOLUTION", 1)[0] if not inside else line)
    return found


def planted_exercise(name: str, points: int, title: str, solution: str, public: str, hidden: str) -> list:
    """One exercise in the project's format: task, solution block, a public test (0 points) and a
    hidden test holding the points."""
    return [
        raw(f"# BEGIN QUESTION\nname: {name}\npoints: {points}"),
        nbformat.v4.new_markdown_cell(title),
        raw("# BEGIN SOLUTION"),
        nbformat.v4.new_code_cell(solution),
        raw("# END SOLUTION"),
        raw("# BEGIN TESTS"),
        nbformat.v4.new_code_cell(f'""" # BEGIN TEST CONFIG\npoints: 0\n""" # END TEST CONFIG\n{public}'),
        nbformat.v4.new_code_cell(
            f'""" # BEGIN TEST CONFIG\nhidden: true\npoints: {points}\n""" # END TEST CONFIG\n{hidden}'
        ),
        raw("# END TESTS"),
        raw("# END QUESTION"),
    ]


def planted_master(path: Path) -> Path:
    """A two-exercise master notebook in the project's format: a function to write, a choice."""
    cells = [
        nbformat.v4.new_markdown_cell("# A planted lesson"),
        *planted_exercise(
            "exercise_1",
            2,
            "### Exercise 1 (write): `double(v)`",
            "def double(v):\n    # BEGIN SOLUTION\n    return 2 * v\n    # END SOLUTION",
            "assert callable(double)",
            "assert double(21) == 42",
        ),
        *planted_exercise(
            "exercise_2",
            1,
            "### Exercise 2 (interpret): A or B?",
            'answer_2 = "B"  # SOLUTION',
            'assert answer_2 in "AB"',
            'assert answer_2 == "B"',
        ),
        raw("# BEGIN QUESTION\nname: questionnaire_1\nmanual: true\npoints: 1"),
        nbformat.v4.new_markdown_cell("**Q1.** Why?"),
        raw("# BEGIN SOLUTION"),
        nbformat.v4.new_markdown_cell("**Model answer.** Because of the planted reason."),
        raw("# END SOLUTION"),
        raw("# END QUESTION"),
        raw(course.ASSIGNMENT_CONFIG),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "cxr-covid", "display_name": "Python (cxr-covid)", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def test_the_student_view_drops_solutions_tests_and_otters_raw_cells(tmp_path):
    nb = nbformat.read(str(planted_master(tmp_path / "99_planted.ipynb")), as_version=4)
    shown = [c.source for c in course.student_view(nb).cells]
    assert shown == [
        "# A planted lesson",
        "### Exercise 1 (write): `double(v)`",
        "### Exercise 2 (interpret): A or B?",
        "**Q1.** Why?",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_is_a_lesson_with_graded_exercises_and_model_answers(path):
    nb = nbformat.read(str(path), as_version=4)
    text = [c.source for c in nb.cells]
    assert nb.cells[-1].cell_type == "raw" and text[-1] == course.ASSIGNMENT_CONFIG
    assert any(t.startswith("## Before you start") and "You will learn to" in t and "previous:" in t for t in text[:3])
    assert any(t.startswith("## Questionnaire") for t in text) and any(t.startswith("## Exercises") for t in text)
    assert any("scratch" in c.metadata.get("tags", []) for c in nb.cells), "the method written out on the page"
    assert not any("course.check(" in t or "course.prove(" in t for t in text), "the old self-check is gone"
    found = questions(nb)
    exercises = [q for q in found if q["settings"]["name"].startswith("exercise_")]
    assert 2 <= len(exercises) <= 4
    assert [q["settings"]["name"] for q in exercises] == [f"exercise_{k}" for k in range(1, len(exercises) + 1)]
    for q in exercises:
        name, configs = q["settings"]["name"], [config_of_test(c.source) for c in q["tests"]]
        assert q["solution"], f"{name} has no solution block"
        unmarked = [c.source[:60] for c in q["solution"] if c.cell_type == "code" and not secret_lines(c)]
        assert not unmarked, f"{name}: a solution cell with no # SOLUTION marker would be shown whole: {unmarked}"
        assert [c for c in configs if c.get("hidden")], f"{name} has no hidden test"
        assert all(c.get("points") == 0 for c in configs if not c.get("hidden")), f"{name}: a public test scores"
        assert sum(c.get("points", 0) for c in configs) == q["settings"]["points"], f"{name}: points do not add up"
    manual = [q for q in found if q["settings"]["name"].startswith("questionnaire_")]
    assert manual and all(q["settings"].get("manual") and q["solution"] for q in manual), "model answers"


def test_the_student_edition_holds_no_solution_and_no_hidden_test(tmp_path):
    key = tmp_path / "key"
    written = course.student_edition(tmp_path / "student", key)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    assert sorted(p.name for p in key.iterdir()) == sorted(f"{p.stem}-autograder.zip" for p in NOTEBOOKS)
    assert not list((tmp_path / "student").glob("*.zip"))
    for master, student in zip(NOTEBOOKS, written):
        nb = nbformat.read(str(master), as_version=4)
        shown = {line.strip() for c in course.student_view(nb).cells for line in c.source.splitlines()}
        hidden = [t for q in questions(nb) for t in q["tests"] if config_of_test(t.source).get("hidden")]
        lines = [line for q in questions(nb) for c in q["solution"] for line in secret_lines(c)]
        lines += [line for t in hidden for line in TEST_CONFIG.sub("", t.source).splitlines()]
        secret = {line.strip() for line in lines if len(line.strip()) >= 12} - shown
        edition = student.read_text()
        leaked = [line for line in secret if json.dumps(line)[1:-1] in edition]
        assert leaked == [], f"{student.name} shows {leaked[:3]}"
        text = "\n".join(c.source for c in nbformat.read(str(student), as_version=4).cells)
        for q in questions(nb):
            if not q["settings"].get("manual"):
                assert f'grader.check("{q["settings"]["name"]}")' in text


def test_grading_gives_a_blank_nothing_and_the_solutions_full_marks(tmp_path, capsys):
    master = planted_master(tmp_path / "99_planted.ipynb")
    key = tmp_path / "key"
    (blank,) = course.student_edition(tmp_path / "student", key, notebooks=[master])
    solved = tmp_path / "solved" / master.name
    solved.parent.mkdir()
    edition = nbformat.read(str(blank), as_version=4)
    for cell in edition.cells:
        cell.source = cell.source.replace("    ...", "    return v + v").replace("answer_2 = ...", 'answer_2 = "B"')
    nbformat.write(edition, str(solved))
    points = {row["question"]: row["points"] for row in course.grade(blank, key)}
    assert points == {"exercise_1": 0, "exercise_2": 0}
    assert cli(["course", "grade", str(solved), "--key", str(key)]) == 0
    printed = capsys.readouterr().out
    assert "exercise_1         2 / 2" in printed and "exercise_2         1 / 1" in printed
    assert "autograded total   3 / 3" in printed


def test_grading_without_an_autograder_says_run_make_student(tmp_path):
    master = planted_master(tmp_path / "99_planted.ipynb")
    with pytest.raises(course.config.ConfigError, match="run `make student` first"):
        course.grade(master, tmp_path / "no-key")


def test_the_points_table_in_course_md_is_the_notebooks_own():
    text = (course.config.PROJECT_ROOT / "COURSE.md").read_text()
    row = re.compile(r"^\| \[(\d\d) · [^]]+\]\(notebooks/[^)]+\) \| (\d+) \| (\d+): (.*) \| (\d+) \| (\d+) \|$", re.M)
    rows = {found.group(1): found.groups()[1:] for found in row.finditer(text)}
    assert sorted(rows) == [p.stem[:2] for p in NOTEBOOKS]
    totals = [0, 0, 0, 0]
    for path in NOTEBOOKS:
        found = questions(nbformat.read(str(path), as_version=4))
        manual = sum(q["settings"]["points"] for q in found if q["settings"].get("manual"))
        points = [q["settings"]["points"] for q in found if not q["settings"].get("manual")]
        listed = [int(item.rsplit(" ", 1)[1]) for item in rows[path.stem[:2]][2].split(" · ")]
        questionnaire, count, _, exercise_points, total = rows[path.stem[:2]]
        assert (int(questionnaire), int(count), listed) == (manual, len(points), points), path.name
        assert (int(exercise_points), int(total)) == (sum(points), manual + sum(points)), path.name
        totals = [a + b for a, b in zip(totals, (manual, len(points), sum(points), manual + sum(points)))]
    assert f"| **all** | **{totals[0]}** | **{totals[1]} exercises** | **{totals[2]}** | **{totals[3]}** |" in text
