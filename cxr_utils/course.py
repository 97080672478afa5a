"""Teaching with the notebooks: self-checked exercises and a student edition without solutions.

An exercise in a notebook is four cells: the task (Markdown); a placeholder the student fills in
(``answer = None``); the solution, tagged ``solution``; and a check cell calling :func:`check`,
which says whether the answer is right without printing it, and gives a hint when it is not.
A verification cell tagged ``solution`` asserts that the check passes on the solution and fails
on the blank, so the instructor edition (run by ``pytest --nbval``) proves both.

``make student`` (``python -m cxr_utils course student``) writes ``student/`` from the same
notebooks with every ``solution`` cell removed (nbconvert's ``TagRemovePreprocessor``) and outputs
cleared: the placeholders remain, and an unanswered check reports "not answered yet".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import config

SOLUTION_TAG = "solution"
NOT_ANSWERED, CORRECT, INCORRECT = "not answered yet", "correct", "not yet right"


def check(
    name: str,
    answer: Any,
    expected: Any = None,
    *,
    tolerance: float = 0.0,
    rule: Callable[[Any], bool] | None = None,
    hint: str = "",
) -> str:
    """Compare a student's answer with the expected value (numbers within ``tolerance``, others
    equal) or test it with ``rule``; print the verdict (never the expected value) and return it."""
    if answer is None:
        print(f"{name}: {NOT_ANSWERED} (replace None with your answer and run this cell again)")
        return NOT_ANSWERED
    try:
        right = rule(answer) if rule is not None else _same(answer, expected, tolerance)
    except Exception as err:  # a wrong kind of answer (a string for a number, say) is a wrong answer
        right, hint = False, f"{hint} ({type(err).__name__}: {err})".strip()
    verdict = CORRECT if right else INCORRECT
    print(f"{name}: {verdict}" + ("" if right or not hint else f". Hint: {hint}"))
    return verdict


def prove(check_answer: Callable[[Any], str], solution: Any, wrong: Any) -> None:
    """The instructor's proof of an exercise: its check (``check_answer``, one answer in, the
    verdict out) passes the solution and fails a blank and a wrong answer (AssertionError if not)."""
    for answer, expected in ((solution, CORRECT), (None, NOT_ANSWERED), (wrong, INCORRECT)):
        verdict = check_answer(answer)
        assert verdict == expected, f"the check gave {verdict!r} for {answer!r}; expected {expected!r}"


def _same(answer: Any, expected: Any, tolerance: float) -> bool:
    if isinstance(expected, bool) or isinstance(answer, bool):
        return bool(answer) == bool(expected) and isinstance(answer, bool)
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        value = float(answer)
        return math.isclose(value, float(expected), abs_tol=tolerance) or (math.isnan(value) and math.isnan(expected))
    if isinstance(expected, str):
        return str(answer).strip().lower() == expected.strip().lower()
    return answer == expected


def student_edition(dest: str | Path, notebooks: list[Path] | None = None) -> list[Path]:
    """Write the student edition of the notebooks into ``dest``: ``solution`` cells removed,
    outputs cleared. Returns the files written."""
    import nbformat
    from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    remove = TagRemovePreprocessor(remove_cell_tags={SOLUTION_TAG}, enabled=True)
    clear = ClearOutputPreprocessor()
    written = []
    for path in notebooks or sorted(config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        nb, _ = remove.preprocess(nb, {})
        nb, _ = clear.preprocess(nb, {})
        nb.metadata["edition"] = "student"
        target = dest / path.name
        nbformat.write(nb, str(target))
        written.append(target)
    return written
