"""The printed report as a reader sees it: the page's geometry (shared by the print style and the
figures), and :func:`print_defects`, which reads a printed PDF back for near-empty pages, text too
small to read (also where Chromium shrinks every page to fit a table too wide), and intervals
and table headers broken across lines."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

PT_PER_MM = 72 / 25.4
PAGE_MM = (210, 297)  # A4
MARGIN_MM = (14, 11)  # the @page margins of export.STYLE: top and bottom, left and right
FIGURE_WIDTH_MM = PAGE_MM[0] - 2 * MARGIN_MM[1]  # a figure prints at most this wide (max-width: 100%)
FIGURE_HEIGHT_MM = 140  # and at most this high, so one that moves on leaves its page at least a third full
MIN_PT = 7.0  # the smallest text readable at 100 %
MIN_FILL = 1 / 3  # a page less full than this must be a section's last (or the report's last)
HEADING = 1.4  # a section heading's font size over the body text's, at least
TOLERANCE_PT = 0.05  # font sizes in the PDF are rounded (9.5 px prints as 7.125 pt)


@dataclass
class Page:
    """One printed page: its words (pdfplumber's, with font size) and image boxes, in points."""

    number: int
    width: float
    height: float
    words: list[dict]
    images: list[dict]

    def fill(self) -> float:
        """Share of the printable height used: from the top margin to the lowest word or image."""
        top = MARGIN_MM[0] * PT_PER_MM
        bottom = max((box["bottom"] for box in self.words + self.images), default=top)
        return (bottom - top) / (self.height - 2 * top)

    def first_line(self) -> list[dict]:
        """The words of the page's first line; none when an image comes first."""
        if not self.words:
            return []
        top = min(w["top"] for w in self.words)
        if any(image["top"] < top - 1 for image in self.images):
            return []
        return [w for w in self.words if w["top"] < top + 2]


def read_pages(pdf: Path) -> list[Page]:
    """Every page of a PDF with its words and images."""
    import pdfplumber

    with pdfplumber.open(pdf) as doc:
        return [
            Page(k, page.width, page.height, page.extract_words(extra_attrs=["size"]), list(page.images))
            for k, page in enumerate(doc.pages, start=1)
        ]


def print_defects(pdf: Path, html: Path | None = None) -> list[str]:
    """What spoils the printed ``pdf``, one line each (none: a clean print): pages less than a third
    full that do not end a section, text below 7 pt, intervals broken across lines and (from the
    ``<th>`` cells of ``html``, by default the HTML beside the PDF) table headers broken inside a word."""
    pages = read_pages(Path(pdf))
    html = Path(html) if html else Path(pdf).with_suffix(".html")
    headers = header_words(html.read_text()) if html.is_file() else set()
    return near_empty(pages) + small_text(pages) + broken_intervals(pages) + broken_headers(pages, headers)


def body_size(pages: list[Page]) -> float:
    """The body text's font size: the most common one (a table's where tables hold most words)."""
    sizes = Counter(round(w["size"], 1) for page in pages for w in page.words)
    return sizes.most_common(1)[0][0] if sizes else 0.0


def near_empty(pages: list[Page]) -> list[str]:
    """Pages less than a third full whose next page does not open a section (a heading, numbered
    or not, at least ``HEADING`` times the body text's size); the last page may be short."""
    body, defects = body_size(pages), []
    for page, following in zip(pages, pages[1:]):
        first = following.first_line()
        opens_section = bool(first) and max(w["size"] for w in first) >= HEADING * body  # any heading
        if page.fill() < MIN_FILL and not opens_section:
            line = " ".join(w["text"] for w in first)[:50] or ("an image" if following.images else "nothing")
            defects.append(
                f"page {page.number}: near-empty ({page.fill():.0%} full) and page {following.number} "
                f"does not open a section (it starts with '{line}')"
            )
    return defects


def small_text(pages: list[Page]) -> list[str]:
    """Pages with words below ``MIN_PT`` (figures are images, so these are the page's own text):
    text set too small, or every page shrunk by Chromium to fit something wider than the page."""
    defects = []
    for page in pages:
        small = [w for w in page.words if w["size"] < MIN_PT - TOLERANCE_PT]
        if small:
            examples = ", ".join(f"'{w['text']}'" for w in small[:4])
            smallest = min(w["size"] for w in small)
            defects.append(
                f"page {page.number}: {len(small)} words below {MIN_PT:g} pt (smallest {smallest:.1f} pt: {examples})"
            )
    return defects


OPENING = re.compile(r"\[[-+]?\d*\.\d+,$")  # "[0.770," of "0.812 [0.770, 0.851]" (at a word's end; not "[8,")
CLOSING = re.compile(r"[-+]?\d*\.\d+\]")  # "0.851]"
SPREAD = re.compile(r"\(-?[\d.]+-[\d.]+\)")  # "(0.801-0.824)" of "0.812 (0.801-0.824)"


def broken_intervals(pages: list[Page]) -> list[str]:
    """Pages where an interval is split over two lines: "0.812 [0.770," then "0.851]", or its value
    left on the line before ("[0.770, 0.851]" or "(0.801-0.824)" first on a line)."""
    defects = []
    for page in pages:
        broken = []
        for word in page.words:
            if opening := OPENING.search(word["text"]):
                alone = opening.start() == 0 and _beside(word, page.words, -1) is None
                after = _beside(word, page.words, 1)
                if alone or after is None or not CLOSING.match(after["text"]):
                    broken.append(word["text"])
            elif SPREAD.match(word["text"]) and _beside(word, page.words, -1) is None:
                broken.append(word["text"])
        if broken:
            examples = ", ".join(f"'{text}'" for text in broken[:4])
            defects.append(f"page {page.number}: {len(broken)} intervals broken across lines (at {examples})")
    return defects


def _beside(word: dict, words: list[dict], side: int) -> dict | None:
    """The word next to ``word`` on its line, to its left (side -1) or right (1), if any."""
    gap = 1.5 * word["size"]
    for other in words:
        if other is not word and abs(other["top"] - word["top"]) < 2:
            distance = other["x0"] - word["x1"] if side > 0 else word["x0"] - other["x1"]
            if -1 <= distance < gap:
                return other
    return None


class _HeaderText(HTMLParser):
    """The text of every ``<th>`` cell of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "th":
            self.depth += 1
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.cells[-1] += data


def header_words(html: str) -> set[str]:
    """The words (4 letters or more, lower case) of a page's table headers."""
    parser = _HeaderText()
    parser.feed(html)
    return {w for cell in parser.cells for w in re.findall(r"\w+", cell.lower()) if len(w) >= 4}


def _plain(text: str) -> str:
    return "".join(re.findall(r"\w+", text.lower()))


def broken_headers(pages: list[Page], headers: set[str]) -> list[str]:
    """Header words printed in pieces on successive lines of their cell ("learnin" over "g rate"),
    and header words that the PDF holds nowhere whole."""
    defects, found = [], set()
    prefixes = {w[:k] for w in headers for k in range(1, len(w))}
    for page in pages:
        plain = [(_plain(w["text"]), w) for w in page.words]
        for text, word in plain:
            if text not in prefixes:
                continue
            for whole, pieces in _continuations(text, word, plain, headers, prefixes):
                if whole not in found:
                    found.add(whole)
                    defects.append(
                        f"page {page.number}: table header word '{whole}' broken across lines as "
                        + " + ".join(f"'{p}'" for p in pieces)
                    )
    printed = {text for page in pages for w in page.words if (text := _plain(w["text"]))}
    for whole in sorted(headers - found):
        if not any(whole in text for text in printed):
            defects.append(f"table header word '{whole}' is nowhere whole in the PDF (broken inside the word?)")
    return defects


def _continuations(text: str, word: dict, plain: list[tuple[str, dict]], headers: set[str], prefixes: set[str]):
    """Header words completed by the words stacked under ``word`` in its cell, with their pieces
    (``prefixes``: the starts of header words)."""
    stack = [(text, word, [text])]
    while stack:
        joined, last, pieces = stack.pop()
        height = last["bottom"] - last["top"]
        for more, below in plain:
            stacked = last["bottom"] - 1 < below["top"] < last["bottom"] + height
            if not (more and stacked and below["x0"] < last["x1"] and below["x1"] > last["x0"]):
                continue
            candidate = joined + more
            if candidate in headers:
                yield candidate, [*pieces, more]
            elif candidate in prefixes:
                stack.append((candidate, below, [*pieces, more]))
