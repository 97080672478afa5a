"""The report as a reader sees it: numbered figures and tables with captions and alt text, the
scale of every result stated above it, numbers printed so that they read right.

Used by the report notebook (07): each :meth:`Document.figure` / :meth:`Document.table` call
displays one numbered, captioned element; the export turns the notebook into HTML and PDF.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SHORT_REASON = 60  # characters of a "not run" reason shown in a table; the whole reason goes to a note
WIDE_TABLE = 15  # columns above which a table prints in a smaller font


SCIENTIFIC = ("learning_rate", "fine_tune_learning_rate")  # columns of rates such as 1e-04


def number_format(column: pd.Series) -> str | None:
    """A format for a float column: scientific for learning rates (1e-04, not 0.000), whole
    numbers without decimals, three decimals otherwise; None for other columns."""
    values = pd.to_numeric(column, errors="coerce").dropna()
    if column.dtype.kind != "f" or values.empty:
        return None
    if column.name in SCIENTIFIC:
        return "{:.0e}"
    if (values == values.round()).all():
        return "{:.0f}"
    return "{:.3f}"


NBSP = "\u00a0"


def unbreakable(value: object) -> object:
    """Text as a table cell shows it: HTML special characters escaped ("<run>" stays visible), and
    an interval "0.812 [0.770, 0.851]" with non-breaking spaces, so that it prints on one line."""
    return html.escape(whole_intervals(value), quote=False) if isinstance(value, str) else value


def styled(table: pd.DataFrame):
    """A table for the report: no index, each float column in its format, empty cells blank,
    intervals kept on one line, and column names with spaces instead of underscores (so that
    headers can wrap between words)."""
    formats = {c: f for c in table.columns if (f := number_format(table[c])) is not None}
    shown = table.map(unbreakable).rename(columns=lambda c: str(c).replace("_", " "))
    return shown.style.hide(axis="index").format({k.replace("_", " "): v for k, v in formats.items()}, na_rep="")


def short_reason(status: str) -> str:
    """What a table shows of a run's status: the reason in a few words ("not run: no offline
    ImageNet weights for vgg16"), the status itself when it is short."""
    text = " ".join(str(status).split())
    backbone = re.search(r"no ImageNet weights for backbone '([^']+)'", text)
    if backbone:
        return f"not run: no offline ImageNet weights for {backbone.group(1)}"
    return shorten(text)


def shorten(reason: str, limit: int = SHORT_REASON) -> str:
    """The start of a long reason, cut at a word boundary."""
    reason = " ".join(str(reason).split())
    if len(reason) <= limit:
        return reason
    return reason[:limit].rsplit(" ", 1)[0] + " …"


RESOLVER_ERROR = re.compile(
    r"URL fetch failure on (?P<url>https?://\S+?): .*?(?:\[Errno -?\d+\][^)]*|name resolution[^)]*|not known[^)]*)",
    re.IGNORECASE,
)
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~])/(?:[\w.+-]+/)+(?P<name>[\w.+-]*)")


def plain_message(text: str) -> str:
    """A run's message as the report prints it: a failed download says so in words (no resolver
    error text), and an absolute path of the build machine is shortened to its last folder and
    its last two folders and file name ("…/outputs/weights/x.h5")."""
    text = " ".join(str(text).split())
    text = RESOLVER_ERROR.sub(lambda m: f"download from {m.group('url')} failed: no network connection", text)
    return ABSOLUTE_PATH.sub(lambda m: "…/" + "/".join(m.group(0).rstrip("/").split("/")[-3:]), text)


@dataclass
class Document:
    """Numbers figures and tables as they are shown; prints a scale line only where it changes
    within a section."""

    figures: int = 0
    tables: int = 0
    shown: list[str] = field(default_factory=list)  # the figure files shown, in order
    last_scale: str | None = None  # the scale line last printed in this section

    def section(self) -> None:
        """A new section starts: its first result prints its scale line again."""
        self.last_scale = None

    def figure(self, path: str | Path, caption: str, alt: str, scale: str | None = None) -> None:
        """Show a saved figure, embedded, as "Figure N. caption" with alt text, under its scale
        line; or say that it was not produced (no number is used up)."""
        from IPython.display import HTML, Markdown, display

        path = Path(path)
        if scale and path.is_file():
            self.scale(scale)
        if not path.is_file():
            display(Markdown(f"*{caption.split('.')[0]}: not produced in this build ({path.name} is absent).*"))
            return
        self.figures += 1
        self.shown.append(path.name)
        data = base64.b64encode(path.read_bytes()).decode()
        display(
            HTML(
                f'<figure class="report-figure" data-file="{html.escape(path.name)}">'
                f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
                f"<figcaption><b>Figure {self.figures}.</b> {html.escape(whole_intervals(caption))}"
                "</figcaption></figure>"
            )
        )

    def table(
        self,
        table: pd.DataFrame,
        caption: str,
        note: str | None = None,
        scale: str | None = None,
        keep: list[str] | None = None,
        max_columns: int = 0,
    ) -> None:
        """Show a table as "Table N. caption" (above it, under its scale line), with an optional note
        below. With ``keep`` and ``max_columns``, a table wider than that prints as parts under one
        number ("Table N (1/2)"), each repeating the ``keep`` columns."""
        from IPython.display import HTML, display

        from .tables import split_columns

        if scale:
            self.scale(scale)
        self.tables += 1
        wide = keep is not None and max_columns and len(table.columns) > max_columns
        parts = split_columns(table, keep, max_columns) if wide else [table]
        for k, part in enumerate(parts, start=1):
            label = f"Table {self.tables}" + (f" ({k}/{len(parts)})" if len(parts) > 1 else "")
            text = whole_intervals(caption) if k == 1 else "continued: the same rows, further columns."
            body = styled(part).to_html() if len(part) else "<p><i>(no rows)</i></p>"
            foot = f'<p class="table-note">{html.escape(whole_intervals(note))}</p>' if note and k == len(parts) else ""
            display(
                HTML(
                    f'<div class="report-table{" wide" if len(part.columns) > WIDE_TABLE else ""}">'
                    f'<p class="table-caption"><b>{label}.</b> {html.escape(text)}</p>{body}{foot}</div>'
                )
            )

    def scale(self, text: str) -> None:
        """The line above a result that says what produced it (profile, images, size, epochs,
        seeds); not repeated while it stays the same within a section."""
        from IPython.display import HTML, display

        if text == self.last_scale:
            return
        self.last_scale = text
        display(HTML(f'<p class="scale-line">{html.escape(text)}</p>'))


def footnotes(reasons: pd.Series, short: Callable[[str], str] = shorten) -> tuple[pd.Series, list[str]]:
    """Short reasons (``short`` of each) with footnote marks for a table, and the numbered full
    reasons; a reason that repeats keeps its first number."""
    notes: list[str] = []
    marks = []
    for reason in reasons:
        text = " ".join(str(reason).split())
        if len(text) <= SHORT_REASON:
            marks.append(text)
            continue
        if text not in notes:
            notes.append(text)
        marks.append(f"{short(text)} [{notes.index(text) + 1}]")
    return pd.Series(marks, index=reasons.index), [f"[{k}] {note}" for k, note in enumerate(notes, start=1)]


def identical_models(table: pd.DataFrame, varying: str = "epochs") -> dict[str, str]:
    """Runs whose kept models are the same model as an earlier run's: configurations that differ
    only in ``varying`` (e.g. the epoch cap), share the seed, kept the same epoch and scored the
    same val AUC. Maps each such run to the first run it equals."""
    keys = [
        c
        for c in (
            "kind",
            "model",
            "size",
            "filter",
            "batch_size",
            "optimizer",
            "learning_rate",
            "activation_output",
            "params_total",
            "seed",
            "best_epoch",
            "val_auc",
        )
        if c in table and c != varying
    ]
    same = {}
    for _, group in table.sort_values("run").groupby([table[c].astype(str) for c in keys]):
        runs = list(group["run"])
        same.update(dict.fromkeys(runs[1:], runs[0]))
    return same


def spread_text(values: pd.Series) -> str:
    """ "0.812 (0.801-0.824)": mean and range over seeds."""
    values = values.astype(float)
    return f"{values.mean():.3f} ({values.min():.3f}-{values.max():.3f})" if len(values) else "n/a"


def interval_text(value: float, low: float, high: float) -> str:
    """ "0.812 [0.770, 0.851]", or "n/a"."""
    if value is None or np.isnan(value):
        return "n/a"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


PROSE_INTERVAL = re.compile(
    r"(?:[-+]?\d*\.\d+\s)?\[[-+]?\d*\.\d+,\s[-+]?\d*\.\d+\]"
)  # "0.812 [0.770, 0.851]", not "[8, 9]"


def whole_intervals(text: str) -> str:
    """Text whose intervals ("0.812 [0.770, 0.851]") are joined by non-breaking spaces, so that
    none is split across two printed lines."""
    return PROSE_INTERVAL.sub(lambda m: m.group(0).replace(" ", NBSP), text)
