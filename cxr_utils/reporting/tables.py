"""Tables and figures as the report shows them: Markdown/CSV files, formatted tables, captions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import registry, results
from .collect import run_folders
from .document import interval_text, number_format, short_reason


def to_markdown(table: pd.DataFrame, path: Path) -> None:
    """Write a table as Markdown, its numbers printed as the report prints them (1e-04, whole
    numbers without decimals, empty cells blank), and as CSV beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path.with_suffix(".csv"), index=False)
    shown = table.astype(object).where(table.notna(), "")
    for column in table.columns:
        if (fmt := number_format(table[column])) is not None:
            shown[column] = ["" if pd.isna(v) else fmt.format(v) for v in table[column]]
    path.with_suffix(".md").write_text(shown.to_markdown(index=False, disable_numparse=True) + "\n")


HEADLINE_METRICS = ("auc", "accuracy", "sensitivity", "specificity", "f1")
CLINICAL_METRICS = ("sensitivity", "specificity", "ppv", "npv", "brier")


def with_intervals(heldout: pd.DataFrame, metrics: tuple[str, ...] = HEADLINE_METRICS) -> pd.DataFrame:
    """Held-out metrics as "value [low, high]" strings: rows model/split/threshold, columns
    ``metrics`` (those present, in that order)."""
    cells = heldout.assign(
        text=[interval_text(v, lo, hi) for v, lo, hi in zip(heldout["value"], heldout["low"], heldout["high"])]
    )
    table = cells.pivot_table(
        index=["model", "split", "threshold", "n"], columns="metric", values="text", aggfunc="first"
    )
    return table[[m for m in metrics if m in table.columns]].reset_index()


def split_columns(table: pd.DataFrame, keep: list[str], max_columns: int) -> list[pd.DataFrame]:
    """A table too wide for the printed page as a few narrower ones of at most ``max_columns``
    columns: each repeats the ``keep`` columns (the row keys) and takes its share of the others,
    in order, the shares as even as they can be."""
    missing = [c for c in keep if c not in table.columns]
    if missing:
        raise KeyError(f"columns to keep are not in the table: {missing}")
    if max_columns <= len(keep):
        raise ValueError(f"max_columns={max_columns} leaves no room beside the {len(keep)} kept columns")
    rest = [c for c in table.columns if c not in keep]
    parts = max(1, -(-len(rest) // (max_columns - len(keep))))
    size = max(1, -(-len(rest) // parts))
    return [table[keep + rest[k : k + size]] for k in range(0, max(len(rest), 1), size)]


def provenance_table(profile: str | None, out: str | Path | None = None) -> pd.DataFrame:
    """Every run behind the report: notebook, run, profile, status, commit, times, weights."""
    rows = []
    for notebook in (
        registry.DATA_MERGE,
        *registry.TRAINING.values(),
        registry.COMPARISON,
        registry.SHORTCUTS,
        registry.SETUPS,
    ):
        for folder in run_folders(notebook, out):
            result = results.read_result(folder) or {}
            if profile and result.get("profile") != profile:
                continue
            prov = result.get("provenance", {})
            weights = result.get("weights")
            rows.append(
                {
                    "notebook": notebook.stem,
                    "run": folder.name,
                    "profile": result.get("profile"),
                    "status": short_reason(str(result.get("status", ""))),
                    "commit": str(prov.get("git_commit", ""))[:12],
                    "started": _minute(prov.get("started")),
                    "finished": _minute(prov.get("finished")),
                    "weights sha256": (weights.get("sha256") or "")[:16] if isinstance(weights, dict) else "",
                }
            )
    return pd.DataFrame(rows)


def _minute(timestamp: str | None) -> str:
    """An ISO timestamp to the minute, as a table shows it ("2026-11-26 11:54")."""
    return str(timestamp or "")[:16].replace("T", " ")
