"""The course layer: self-checks that can fail, and a student edition without solutions that runs."""

from __future__ import annotations

import json

import nbformat
import pytest

from cxr_utils import config, course
from cxr_utils.runs import runner

NOTEBOOKS = sorted(config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_a_check_says_right_wrong_or_unanswered_without_showing_the_answer(capsys):
    assert course.check("e", None, 3) == course.NOT_ANSWERED
    assert course.check("e", 3.0001, 3, tolerance=0.001) == course.CORRECT
    assert course.check("e", 3.1, 3, tolerance=0.001, hint="look again") == course.INCORRECT
    assert course.check("e", "Float32 ", "float32") == course.CORRECT
    assert course.check("e", "many", 3) == course.INCORRECT  # a string for a number is a wrong answer, not a crash
    assert course.check("e", 1, True) == course.INCORRECT and course.check("e", True, True) == course.CORRECT
    assert course.check("e", [0.0, 1e-9], rule=lambda a: all(abs(v) < 1e-6 for v in a)) == course.CORRECT
    printed = capsys.readouterr().out
    assert "Hint: look again" in printed and "3.1" not in printed.replace("e: ", "")


def test_the_instructors_proof_fails_a_check_that_cannot_tell_right_from_wrong():
    course.prove(lambda answer: course.check("e", answer, 3), 3, 4)
    with pytest.raises(AssertionError, match="the check gave 'correct' for 4"):
        course.prove(lambda answer: course.check("e", answer, rule=lambda a: a > 0), 3, 4)
    with pytest.raises(AssertionError, match="for 2; expected 'correct'"):
        course.prove(lambda answer: course.check("e", answer, 3), 2, 4)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_opens_with_objectives_and_ends_with_questions_and_checked_exercises(path):
    nb = nbformat.read(str(path), as_version=4)
    text = [c.source for c in nb.cells]
    assert any(t.startswith("## Before you start") and "You will learn to" in t and "previous:" in t for t in text[:3])
    assert any(t.startswith("## Questionnaire") for t in text)
    exercises = [t for t in text if t.startswith("### Exercise ")]
    assert 2 <= len(exercises) <= 4
    for k in range(1, len(exercises) + 1):
        assert f"answer_{k} = None  # your answer" in "\n".join(text)
        solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", []) and f"answer_{k}" in c.source]
        assert len(solutions) == 2, f"{path.name}: exercise {k} needs a solution and its verification"
        assert any(c.source.split("\n", 1)[-1].startswith("course.prove(") for c in solutions)


def test_the_student_edition_has_no_solutions_and_keeps_every_placeholder(tmp_path):
    written = course.student_edition(tmp_path / "student")
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    for original, student in zip(NOTEBOOKS, written):
        before, after = (nbformat.read(str(p), as_version=4) for p in (original, student))
        assert not [c for c in after.cells if course.SOLUTION_TAG in c.metadata.get("tags", [])]
        kept = [c for c in before.cells if course.SOLUTION_TAG not in c.metadata.get("tags", [])]
        assert [c.source for c in after.cells] == [c.source for c in kept]
        assert after.metadata["edition"] == "student"
        assert all(not c.get("outputs") for c in after.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.mirror
def test_student_notebooks_run_top_to_bottom_and_report_unanswered_exercises(tmp_path, mirror_root, clean_env):
    clean_env.setenv("CXR_OFFLINE", "1")
    student = course.student_edition(
        tmp_path / "student", [config.NOTEBOOKS_DIR / f"{s}.ipynb" for s in ("01_data_merge", "02_custom_cnn")]
    )
    out = tmp_path / "out"
    for path in student:
        params = tmp_path / path.stem / "smoke.yaml"  # run "smoke": the defaults chain 01 -> 02 through it
        params.parent.mkdir()
        params.write_text("{}\n")
        outcome = runner.run_batch(path, [params], profile="smoke", out=out)[0]
        assert outcome.status == "complete", outcome.detail
        executed = json.loads((outcome.folder / runner.EXECUTED_NOTEBOOK).read_text())
        printed = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
        exercises = sum(
            c["source"].startswith("### Exercise")
            if isinstance(c["source"], str)
            else "".join(c["source"]).startswith("### Exercise")
            for c in executed["cells"]
        )
        assert printed.count(course.NOT_ANSWERED) == exercises > 0
