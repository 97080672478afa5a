"""Figures: one function each, one look. Each returns its matplotlib Figure and can save it."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .images import ImageReadError, load_gray8

PALETTE = {"COVID": "#c0392b", "NONCOVID": "#2e86c1"}
sns.set_theme(style="whitegrid", context="notebook")


def _save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def counts_by_source(manifest: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Bar chart: images per source and label."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.countplot(data=manifest, x="source", hue="label", palette=PALETTE, ax=ax,
                  order=sorted(manifest["source"].unique()), hue_order=list(PALETTE))
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set(title="Images per source and label", xlabel="", ylabel="images")
    return _save(fig, path)


def split_sizes(manifest: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Bar chart: images per split and label."""
    order = [s for s in ("train", "val", "test", "external") if s in set(manifest["split"])]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.countplot(data=manifest, x="split", hue="label", palette=PALETTE, order=order,
                  hue_order=list(PALETTE), ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set(title="Split sizes by label (grouped by patient and duplicates)", xlabel="", ylabel="images")
    return _save(fig, path)


def _show(ax: plt.Axes, root: Path, rel_path: str, title: str) -> None:
    try:
        ax.imshow(load_gray8(Path(root) / rel_path), cmap="gray")
    except ImageReadError as err:
        ax.text(0.5, 0.5, err.reason, ha="center", va="center")
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def sample_grid(manifest: pd.DataFrame, root: str | Path, per_cell: int = 3, seed: int = 0,
                path: str | Path | None = None) -> plt.Figure:
    """A few random images for every (source, label) present: rows are source x label."""
    cells = sorted(manifest.groupby(["source", "label"]).groups)
    fig, axes = plt.subplots(len(cells), per_cell, figsize=(1.9 * per_cell, 2.0 * len(cells)), squeeze=False)
    for row, (source, label) in enumerate(cells):
        chosen = manifest[(manifest["source"] == source) & (manifest["label"] == label)]
        chosen = chosen.sample(min(per_cell, len(chosen)), random_state=seed)
        for col in range(per_cell):
            ax = axes[row, col]
            if col < len(chosen):
                item = chosen.iloc[col]
                _show(ax, root, item["path"], f"{source} / {label}\n{item['image_id'].split(':', 1)[1][:24]}")
            else:
                ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def duplicate_pairs(pairs: pd.DataFrame, root: str | Path, n: int = 4,
                    path: str | Path | None = None) -> plt.Figure:
    """Side-by-side examples of duplicate pairs (cross-source first)."""
    shown = pairs.sort_values(["cross_source", "distance"], ascending=[False, True]).head(n)
    fig, axes = plt.subplots(max(len(shown), 1), 2, figsize=(5, 2.5 * max(len(shown), 1)), squeeze=False)
    if shown.empty:
        axes[0, 0].text(0.5, 0.5, "no duplicate pairs found", ha="center")
        for ax in axes[0]:
            ax.axis("off")
    for row, pair in enumerate(shown.itertuples()):
        for col, side in enumerate("ab"):
            title = f"{getattr(pair, 'image_id_' + side)[:34]}\n{getattr(pair, 'label_' + side)}"
            _show(axes[row, col], root, getattr(pair, "path_" + side), title)
        axes[row, 0].text(1.02, -0.08, f"{pair.kind}, distance {pair.distance}", fontsize=7,
                          transform=axes[row, 0].transAxes)
    fig.tight_layout()
    return _save(fig, path)


def training_curves(history: pd.DataFrame, title: str, best_epoch: int | None = None,
                    path: str | Path | None = None) -> plt.Figure:
    """Accuracy, AUC and loss by epoch, train vs val, with the best epoch marked."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    for ax, metric in zip(axes, ("accuracy", "auc", "loss")):
        ax.plot(history["epoch"], history[metric], marker="o", ms=3, label="train")
        ax.plot(history["epoch"], history[f"val_{metric}"], marker="o", ms=3, label="val")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls=":", lw=1, label="best (val AUC)")
        ax.set(title=metric, xlabel="epoch")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def confusion_matrix(counts, title: str, path: str | Path | None = None) -> plt.Figure:
    """A 2x2 confusion matrix (rows: true label, columns: predicted)."""
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    sns.heatmap(counts, annot=True, fmt="d", cbar=False, cmap="Blues", ax=ax,
                xticklabels=["NONCOVID", "COVID"], yticklabels=["NONCOVID", "COVID"])
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return _save(fig, path)
