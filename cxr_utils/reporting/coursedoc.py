"""COURSE.md read as data: its ``##`` sections, the glossary table and the numbered references.

The course guide holds the project's glossary and reference list once; the report shows the
glossary terms it uses and cites the references by number from here, and the course-document
tests check the same entries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import config

COURSE_FILE = config.PROJECT_ROOT / "COURSE.md"
URL = re.compile(r"https?://[^\s;,]+")


def sections(text: str) -> dict[str, str]:
    """The body of every ``## `` section, by its heading (without a leading "1. " number)."""
    found, heading, lines = {}, None, []
    for line in text.splitlines():
        if line.startswith("## "):
            if heading is not None:
                found[heading] = "\n".join(lines)
            heading, lines = re.sub(r"^\d+\.\s*", "", line[3:].strip()), []
        elif heading is not None:
            lines.append(line)
    if heading is not None:
        found[heading] = "\n".join(lines)
    return found


def section(text: str, name: str) -> str | None:
    """The body of the first section whose heading starts with ``name`` (None if there is none)."""
    return next((body for heading, body in sections(text).items() if heading.startswith(name)), None)


def glossary(text: str) -> list[tuple[str, str]]:
    """(term, definition) for each row of the glossary table, header and rule skipped."""
    body = section(text, "Glossary") or ""
    rows = [line.strip() for line in body.splitlines() if line.strip().startswith("|")]
    entries = []
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        entries.append((cells[0], " | ".join(cells[1:]).strip()))
    return entries


def references(text: str) -> list[str]:
    """The numbered entries of the references section ("1. Lopes F. ..."), continuation lines joined."""
    entries: list[str] = []
    for line in (section(text, "References") or "").splitlines():
        if re.match(r"^\d+\.\s", line):
            entries.append(line)
        elif entries and line.strip() and line.startswith(" "):
            entries[-1] += " " + line.strip()
    return entries


@dataclass(frozen=True)
class Bibliography:
    """The course's reference list, cited by a word of each entry (an author, a title word)."""

    entries: tuple[str, ...]

    @classmethod
    def read(cls, path: str | Path = COURSE_FILE) -> Bibliography:
        """The references of ``path`` (COURSE.md); an error names the file when there are none."""
        entries = tuple(re.sub(r"^\d+\.\s+", "", e) for e in references(Path(path).read_text(encoding="utf-8")))
        if not entries:
            raise config.ConfigError(f"{path}: no numbered entries under a '## References' heading")
        return cls(entries)

    def number(self, key: str) -> int:
        """The 1-based number of the only entry containing ``key``; an error when none or several do."""
        found = [k for k, entry in enumerate(self.entries, start=1) if key in entry]
        if len(found) != 1:
            raise KeyError(f"reference key {key!r} matches {len(found)} entries of the course's reference list")
        return found[0]

    def cite(self, *keys: str) -> str:
        """ "[2, 3]": the numbers of the entries named by ``keys`` (joined by non-breaking spaces, so
        that a citation stays on one line)."""
        return "[" + ",\u00a0".join(str(n) for n in sorted({self.number(k) for k in keys})) + "]"

    def markdown(self) -> str:
        """The numbered list, each link written as a Markdown link."""
        return "\n".join(
            f"{k}. {URL.sub(lambda m: f'<{m.group(0)}>', entry)}" for k, entry in enumerate(self.entries, start=1)
        )


def glossary_terms(terms: list[str], path: str | Path = COURSE_FILE) -> list[tuple[str, str]]:
    """(term, definition) of each of ``terms`` from the course glossary, in the order given; an
    error names the terms the glossary lacks."""
    defined = {
        re.sub(r"\s+", " ", t.replace("`", "")).strip().lower(): (t, d) for t, d in glossary(Path(path).read_text())
    }
    missing = [t for t in terms if t.lower() not in defined]
    if missing:
        raise config.ConfigError(f"{path}: glossary lacks {', '.join(missing)}")
    return [defined[t.lower()] for t in terms]
