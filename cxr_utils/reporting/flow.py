"""The flow of images from the sources to the splits (CLAIM: data flow diagram).

:func:`flow_counts` counts every step from a manifest and its exclusions; :func:`flow_diagram`
draws those counts as boxes and arrows (matplotlib only), sized for an A4 page: at most
7.4 inches wide, no text below 8 pt.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import FancyBboxPatch

from ..data.manifest import SPLITS
from ..data.sources import SOURCES
from .plots import _save

ORPHAN_REASON = "no_metadata"  # files that no metadata row names: read as files, not as rows
FIGURE_WIDTH = 7.4  # inches: 188 mm on A4
CONTENT_WIDTH = 7.1  # inches: leaves room for bbox_inches="tight" padding
FONT_SIZE = 8
LINE = 0.15  # inches per line of 8 pt text
PAD = 0.07  # inches of padding inside a box
GAP = 0.32  # inches between rows of boxes
COLOURS = {"source": "#eaf2f8", "excluded": "#f2f3f4", "kept": "#e9f7ef", "merged": "#fef9e7", "split": "#fdedec"}


# --------------------------------------------------------------------------- counting


def _ordered_sources(*frames: pd.DataFrame) -> list[str]:
    present = set().union(*(set(f["source"]) for f in frames if f is not None))
    return [s for s in SOURCES if s in present] + sorted(present - set(SOURCES))


def reason_counts(exclusions: pd.DataFrame, sources: Sequence[str]) -> pd.DataFrame:
    """Excluded rows or files per source (rows) and reason (columns, most frequent first)."""
    table = exclusions.groupby(["source", "reason"]).size().unstack(fill_value=0)
    table = table.reindex(index=list(sources), fill_value=0).fillna(0).astype(int)
    return table[table.sum().sort_values(ascending=False, kind="stable").index]


def source_counts(
    manifest: pd.DataFrame, exclusions: pd.DataFrame, source_table: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per source: rows or files read, excluded, kept, and ``not_drawn`` (left out of a subset run).

    ``read`` comes from ``source_table`` (every metadata row as read, plus files no row names)
    when given; otherwise it is kept + excluded and ``not_drawn`` is 0.
    """
    sources = _ordered_sources(manifest, exclusions, source_table)
    kept = manifest["source"].value_counts().reindex(sources, fill_value=0)
    excluded = exclusions["source"].value_counts().reindex(sources, fill_value=0)
    if source_table is None:
        read = kept + excluded
    else:
        orphans = exclusions.loc[exclusions["reason"] == ORPHAN_REASON, "source"].value_counts()
        read = source_table["source"].value_counts().reindex(sources, fill_value=0) + orphans.reindex(
            sources, fill_value=0
        )
    table = pd.DataFrame({"read": read, "excluded": excluded, "kept": kept}).astype(int)
    table["not_drawn"] = table["read"] - table["excluded"] - table["kept"]
    table.index.name = "source"
    return table


def split_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per split: images, groups, COVID and NONCOVID images, and the sources in it."""
    splits = [s for s in SPLITS if s in set(manifest["split"])]
    rows = []
    for split in splits:
        part = manifest[manifest["split"] == split]
        rows.append(
            {
                "split": split,
                "images": len(part),
                "groups": part["group_id"].nunique(),
                "COVID": int((part["label"] == "COVID").sum()),
                "NONCOVID": int((part["label"] == "NONCOVID").sum()),
                "sources": ", ".join(_ordered_sources(part)),
            }
        )
    return pd.DataFrame(rows, columns=["split", "images", "groups", "COVID", "NONCOVID", "sources"]).set_index("split")


def merged_counts(manifest: pd.DataFrame) -> dict:
    """The merged internal images (every split but external): images, groups, groups spanning sources."""
    internal = manifest[manifest["split"] != "external"]
    sources_per_group = internal.groupby("group_id")["source"].nunique()
    return {
        "images": len(internal),
        "groups": int(internal["group_id"].nunique()),
        "cross_source_groups": int((sources_per_group > 1).sum()),
    }


def external_sources(manifest: pd.DataFrame) -> list[str]:
    """Sources whose every image is in the external split."""
    is_external = manifest.groupby("source")["split"].agg(lambda s: (s == "external").all())
    return [s for s in _ordered_sources(manifest) if is_external.get(s, False)]


def flow_counts(manifest: pd.DataFrame, exclusions: pd.DataFrame, source_table: pd.DataFrame | None = None) -> dict:
    """Every number of the flow diagram: per source (read, excluded by reason, kept), the merged
    internal set (images, groups), and per split (images, groups, COVID / NONCOVID)."""
    sources = source_counts(manifest, exclusions, source_table)
    return {
        "sources": sources,
        "reasons": reason_counts(exclusions, sources.index),
        "merged": merged_counts(manifest),
        "splits": split_counts(manifest),
        "external_sources": external_sources(manifest),
        "read_from": "kept + excluded" if source_table is None else "source table",
    }


# --------------------------------------------------------------------------- drawing


@dataclass
class Box:
    """A drawn box: centre x, top and bottom y (inches)."""

    x: float
    top: float
    bottom: float


def _wrap(lines: Sequence[str], width_in: float) -> list[str]:
    """Wrap each line to what fits in ``width_in`` inches at 8 pt (about 0.6 em per character)."""
    chars = max(10, int(width_in * 72 / (FONT_SIZE * 0.6)))
    return [part for line in lines for part in (textwrap.wrap(line, chars) or [""])]


def _box_height(title: str, lines: Sequence[str], width: float) -> float:
    return (len(_wrap([title], width)) + len(_wrap(lines, width))) * LINE + 2 * PAD


def _draw_box(ax: plt.Axes, x: float, top: float, width: float, title: str, lines: Sequence[str], kind: str) -> Box:
    """A rounded box with a bold title and plain lines, centred at ``x`` below ``top``."""
    title_lines, body = _wrap([title], width - 2 * PAD), _wrap(lines, width - 2 * PAD)
    height = (len(title_lines) + len(body)) * LINE + 2 * PAD
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, top - height),
            width,
            height,
            boxstyle="round,pad=0,rounding_size=0.05",
            facecolor=COLOURS[kind],
            edgecolor="#5d6d7e",
            linewidth=0.8,
        )
    )
    text_top = top - PAD
    ax.text(x, text_top, "\n".join(title_lines), ha="center", va="top", fontsize=FONT_SIZE, fontweight="bold")
    if body:
        ax.text(x, text_top - len(title_lines) * LINE, "\n".join(body), ha="center", va="top", fontsize=FONT_SIZE)
    return Box(x, top, top - height)


def _arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": "#5d6d7e", "lw": 0.8})


def _source_texts(counts: dict) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """Per source, the lines of its read, excluded and kept boxes."""
    texts = {}
    for source, row in counts["sources"].iterrows():
        reasons = counts["reasons"].loc[source]
        excluded = [f"{reason.replace('_', ' ')}: {n:,}" for reason, n in reasons.items() if n > 0]
        if row["not_drawn"] > 0:
            excluded.append(f"not drawn (subset run): {row['not_drawn']:,}")
        texts[source] = ([f"{row['read']:,} rows/files read"], excluded, [f"{row['kept']:,} images"])
    return texts


def _split_lines(row: pd.Series) -> list[str]:
    return [
        f"{row['images']:,} images",
        f"{row['groups']:,} groups",
        f"COVID {row['COVID']:,}",
        f"non-COVID {row['NONCOVID']:,}",
    ]


def flow_diagram(counts: dict, path: str | Path | None = None) -> plt.Figure:
    """Boxes and arrows: each source (read) -> excluded, by reason -> kept -> the merged internal
    set (images, groups) -> train / val / test; external sources -> the external split."""
    table = counts["sources"]
    if table.empty:
        raise ValueError("nothing to draw: no sources in the flow counts")
    sources = list(table.index)
    external = [s for s in counts["external_sources"] if s in sources]
    internal = [s for s in sources if s not in external]
    column = CONTENT_WIDTH / len(sources)
    width = column - 0.12
    xs = {s: column * (k + 0.5) for k, s in enumerate(internal + external)}
    texts = _source_texts(counts)

    rows = [
        max(_box_height(s, texts[s][0], width - 2 * PAD) for s in sources),
        max(_box_height(f"excluded {table.at[s, 'excluded']:,}", texts[s][1], width - 2 * PAD) for s in sources),
        max(_box_height("kept", texts[s][2], width - 2 * PAD) for s in sources),
    ]
    merged_lines = _merged_lines(counts["merged"])
    splits = counts["splits"]
    internal_splits = [s for s in splits.index if s != "external"]
    span = column * len(internal)
    split_width = span / max(1, len(internal_splits)) - 0.12
    split_widths = {s: width if s == "external" else split_width for s in splits.index}
    rows.append(_box_height("merged (internal)", merged_lines, span - 0.12 - 2 * PAD) if internal else 0.0)
    rows.append(max(_box_height(s, _split_lines(splits.loc[s]), split_widths[s] - 2 * PAD) for s in splits.index))
    height = sum(rows) + GAP * (len(rows) - 1)

    fig = plt.figure(figsize=(FIGURE_WIDTH, height + 0.2))
    margin = (FIGURE_WIDTH - CONTENT_WIDTH) / 2
    # the axes span the content only: bbox_inches="tight" keeps the axes' extent, plus its padding
    ax = fig.add_axes(
        (margin / FIGURE_WIDTH, 0.1 / (height + 0.2), CONTENT_WIDTH / FIGURE_WIDTH, height / (height + 0.2))
    )
    ax.set_xlim(0, CONTENT_WIDTH)
    ax.set_ylim(0, height)
    ax.axis("off")
    tops = [height - sum(rows[:k]) - GAP * k for k in range(len(rows))]

    kept_boxes = {}
    for source in sources:
        read_lines, excluded_lines, kept_lines = texts[source]
        read = _draw_box(ax, xs[source], tops[0], width, source, read_lines, "source")
        drop = _draw_box(
            ax, xs[source], tops[1], width, f"excluded {table.at[source, 'excluded']:,}", excluded_lines, "excluded"
        )
        kept = _draw_box(ax, xs[source], tops[2], width, "kept", kept_lines, "kept")
        _arrow(ax, (read.x, read.bottom), (drop.x, drop.top))
        _arrow(ax, (drop.x, drop.bottom), (kept.x, kept.top))
        kept_boxes[source] = kept

    if internal:
        merged = _draw_box(ax, span / 2, tops[3], span - 0.12, "merged (internal)", merged_lines, "merged")
        for source in internal:
            _arrow(ax, (xs[source], kept_boxes[source].bottom), (xs[source], merged.top))
        for k, split in enumerate(internal_splits):
            x = (k + 0.5) * span / len(internal_splits)
            box = _draw_box(ax, x, tops[4], split_width, split, _split_lines(splits.loc[split]), "split")
            _arrow(ax, (x, merged.bottom), (x, box.top))
    if "external" in splits.index and external:
        x = sum(xs[s] for s in external) / len(external)
        box = _draw_box(ax, x, tops[4], width, "external", _split_lines(splits.loc["external"]), "split")
        for source in external:
            _arrow(ax, (xs[source], kept_boxes[source].bottom), (x, box.top))
    return _save(fig, path)


def _merged_lines(merged: dict) -> list[str]:
    return [
        f"{merged['images']:,} images",
        f"{merged['groups']:,} groups (same patient or duplicate images)",
        f"{merged['cross_source_groups']:,} groups span sources; split by group",
    ]
