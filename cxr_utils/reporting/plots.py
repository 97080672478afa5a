"""Figures: one function each, one look. Each returns its matplotlib Figure and can save it."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.text import Text

from ..analysis.evaluation import MIN_PER_CLASS
from ..data.images import ImageReadError, load_gray8
from . import layout

PALETTE = {"COVID": "#c0392b", "NONCOVID": "#2e86c1"}
sns.set_theme(style="whitegrid", context="notebook")


def _require(data, what: str) -> None:
    """A figure of nothing is a mistake upstream: say which input was empty."""
    if data is None or len(data) == 0:
        raise ValueError(f"nothing to draw: {what} is empty")


DPI = 120  # saved figures; the report shows them at 96 px per inch: 1.25 times their size unless scaled down
# the largest figure (inches) that prints at its own size: the print's box less the saved padding
WIDTH = layout.FIGURE_WIDTH_MM / 25.4 - 2 * plt.rcParams["savefig.pad_inches"]
HEIGHT = layout.FIGURE_HEIGHT_MM / 25.4 - 2 * plt.rcParams["savefig.pad_inches"]


def print_scale(fig: plt.Figure, dpi: int = DPI) -> float:
    """How much the report's print scales a figure saved with a tight box at ``dpi``: shown at 96 px
    per inch, and scaled down to at most ``layout.FIGURE_WIDTH_MM`` wide and ``FIGURE_HEIGHT_MM`` high."""
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    mm = 25.4
    return min(dpi / 96, layout.FIGURE_WIDTH_MM / mm / box.width, layout.FIGURE_HEIGHT_MM / mm / box.height)


def smallest_printed_font(fig: plt.Figure, dpi: int = DPI) -> tuple[float, str]:
    """The smallest text of a figure as the report prints it: its size in points and the text."""
    hidden = {id(t) for ax in fig.axes if not ax.axison for axis in (ax.xaxis, ax.yaxis) for t in axis.findobj(Text)}
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    if not texts:
        return float("inf"), ""
    smallest = min(texts, key=Text.get_fontsize)
    return smallest.get_fontsize() * print_scale(fig, dpi), smallest.get_text()


CAPTION_PT = 7  # captions of image tiles


def _chars(inches: float, size: float = CAPTION_PT) -> int:
    """About how many characters of ``size`` pt fit in ``inches``."""
    return max(6, int(inches * 72 / (0.65 * size)))


def _wrap(text: str, inches: float, size: float = CAPTION_PT) -> str:
    """``text`` wrapped, line by line, to about ``inches`` at ``size`` pt."""
    return "\n".join(textwrap.fill(line, _chars(inches, size)) for line in str(text).splitlines())


def _tile(cols: int, rows: int, caption_lines: int, label: float = 0.0) -> float:
    """The side (inches) of the square image tiles of a grid with captions of ``caption_lines``
    lines (and a ``label`` column) that prints at its own size: at most 1.8 in."""
    return min(1.8, (WIDTH - label) / cols, (HEIGHT - 0.4) / rows - caption_lines * CAPTION_PT * 1.3 / 72)


def _save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    """Save at ``DPI`` with a tight box, once every text is readable in print (``layout.MIN_PT``)."""
    if path is not None:
        size, text = smallest_printed_font(fig)
        if size < layout.MIN_PT - layout.TOLERANCE_PT:
            raise ValueError(
                f"{Path(path).name}: '{text}' would print at {size:.1f} pt (at least {layout.MIN_PT:g} pt): "
                "enlarge its font or make the figure smaller"
            )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return fig


def counts_by_source(manifest: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Bar chart: images per source and label."""
    _require(manifest, "the manifest")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.countplot(
        data=manifest,
        x="source",
        hue="label",
        palette=PALETTE,
        ax=ax,
        order=sorted(manifest["source"].unique()),
        hue_order=list(PALETTE),
    )
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set(title="Images per source and label", xlabel="", ylabel="images")
    return _save(fig, path)


def split_sizes(manifest: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Bar chart: images per split and label."""
    _require(manifest, "the manifest")
    order = [s for s in ("train", "val", "test", "external") if s in set(manifest["split"])]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.countplot(data=manifest, x="split", hue="label", palette=PALETTE, order=order, hue_order=list(PALETTE), ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set(title="Split sizes by label (grouped by patient and duplicates)", xlabel="", ylabel="images")
    return _save(fig, path)


def _show(ax: plt.Axes, root: Path, rel_path: str, title: str) -> None:
    try:
        ax.imshow(load_gray8(Path(root) / rel_path), cmap="gray")
    except ImageReadError as err:
        ax.text(0.5, 0.5, err.reason, ha="center", va="center")
    ax.set_title(title, fontsize=CAPTION_PT)
    ax.axis("off")


def sample_grid(
    manifest: pd.DataFrame, root: str | Path, per_cell: int = 3, seed: int = 0, path: str | Path | None = None
) -> plt.Figure:
    """A few random images for every (source, label) present: one column each (headed by it), each
    image under the start of its id."""
    _require(manifest, "the manifest")
    cells = sorted(manifest.groupby(["source", "label"]).groups)
    tile = _tile(len(cells), per_cell, 1)
    size = (tile * len(cells), 0.4 + per_cell * (tile + 0.15))
    fig, axes = plt.subplots(per_cell, len(cells), figsize=size, squeeze=False)
    chars = _chars(tile) - 3
    for col, (source, label) in enumerate(cells):
        chosen = manifest[(manifest["source"] == source) & (manifest["label"] == label)]
        chosen = chosen.sample(min(per_cell, len(chosen)), random_state=seed)
        for row in range(per_cell):
            ax = axes[row, col]
            if row < len(chosen):
                item = chosen.iloc[row]
                name = item["image_id"].split(":", 1)[1]
                name = name if len(name) <= chars else name[: chars - 1] + "…"
                _show(ax, root, item["path"], (_wrap(f"{source} / {label}", tile) + "\n" if row == 0 else "") + name)
            else:
                ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def duplicate_pairs(pairs: pd.DataFrame, root: str | Path, n: int = 4, path: str | Path | None = None) -> plt.Figure:
    """Examples of duplicate pairs (cross-source first), one pair per column: its two images one
    above the other, with their ids and labels, and the kind and distance of the pair below."""
    shown = pairs.sort_values(["cross_source", "distance"], ascending=[False, True]).head(n)
    cols = max(len(shown), 1)
    tile = _tile(cols, 2, 3)
    fig, axes = plt.subplots(2, cols, figsize=(tile * cols, 0.4 + 2 * (tile + 0.4)), squeeze=False)
    if shown.empty:
        axes[0, 0].text(0.5, 0.5, "no duplicate pairs found", ha="center")
        for ax in axes.flat:
            ax.axis("off")
    for col, pair in enumerate(shown.itertuples()):
        for row, side in enumerate("ab"):
            title = f"{_wrap(getattr(pair, 'image_id_' + side), tile)}\n{getattr(pair, 'label_' + side)}"
            _show(axes[row, col], root, getattr(pair, "path_" + side), title)
        axes[1, col].text(
            0.5,
            -0.04,
            f"{pair.kind}, distance {pair.distance}",
            fontsize=CAPTION_PT,
            ha="center",
            va="top",
            transform=axes[1, col].transAxes,
        )
    fig.tight_layout()
    return _save(fig, path)


def training_curves(
    history: pd.DataFrame,
    title: str,
    best_epoch: int | None = None,
    path: str | Path | None = None,
    epoch0: Mapping[str, float] | None = None,
) -> plt.Figure:
    """Accuracy, AUC and loss by epoch, train (training mode) vs val, with the kept epoch marked
    and, given ``epoch0``, the untrained model's inference-mode AUCs drawn at epoch 0."""
    _require(history, "the training history")
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH, 3.0))
    for ax, metric in zip(axes, ("accuracy", "auc", "loss")):
        train = ax.plot(history["epoch"], history[metric], marker="o", ms=3, label="train (training mode)")[0]
        val = ax.plot(history["epoch"], history[f"val_{metric}"], marker="o", ms=3, label="val")[0]
        if metric == "auc" and epoch0:
            ax.plot(
                [0],
                [epoch0["train_auc"]],
                marker="s",
                ls="",
                color=train.get_color(),
                mfc="white",
                label="train, untrained (inference)",
            )
            ax.plot([0], [epoch0["val_auc"]], marker="s", ls="", color=val.get_color(), label="val, untrained")
            ax.axhline(epoch0["val_auc"], color=val.get_color(), ls="--", lw=0.8)
            ax.legend(fontsize=7, loc="lower right")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls=":", lw=1, label="kept (best val AUC)")
        ax.set(title=metric, xlabel="epoch")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def final_fit_curves(fits: Mapping[str, list[tuple[str, pd.DataFrame, int, int]]], path: str | Path | None = None):
    """Val AUC by epoch of every final fit, one panel per chosen configuration and one line per
    seed: ``fits`` maps a configuration to (run, history, kept epoch, epoch cap) per seed. The
    kept epochs are dots; a line that reaches the cap with its best epoch last is still rising."""
    _require(fits, "the final fits")
    fig, axes = plt.subplots(1, len(fits), figsize=(min(WIDTH, 3.8 * len(fits)), 3.2), squeeze=False)
    for ax, (configuration, seeds) in zip(axes[0], fits.items()):
        for run, history, kept, cap in seeds:
            line = ax.plot(history["epoch"], history["val_auc"], lw=1.2, label=run)[0]
            ax.plot([kept], [history.loc[history["epoch"] == kept, "val_auc"].iloc[0]], "o", color=line.get_color())
            if len(history) >= cap and kept == int(history["epoch"].iloc[-1]):
                ax.annotate(
                    f"{run}:\nstill rising at the cap",
                    (kept, history["val_auc"].iloc[-1]),
                    xytext=(0.04, 0.8),
                    textcoords="axes fraction",
                    fontsize=7,
                    arrowprops={"arrowstyle": "->", "lw": 0.6, "color": line.get_color()},
                )
        ax.set(xlabel="epoch", ylabel="val AUC")
        ax.set_title(f"final fits of {configuration}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def confusion_matrix(counts, title: str, path: str | Path | None = None) -> plt.Figure:
    """A 2x2 confusion matrix (rows: true label, columns: predicted)."""
    return confusion_grid({title: counts}, path)


def val_auc_by_run(table: pd.DataFrame, study_auc: dict | None = None, path: str | Path | None = None) -> plt.Figure:
    """Val AUC of every custom screening run beside its epoch-0 (untrained) val AUC; degenerate
    runs hatched, runs that did not learn in grey; the study's value as a black mark."""
    runs = table[(table["kind"] == "custom") & (table["role"] == "screening")]
    if "configuration" in runs:  # each configuration's first seed (the one-seed pass of the grid)
        runs = runs[runs["run"] == runs["configuration"]]
    runs = runs.sort_values("run")
    _require(runs, "the table of custom runs")
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    xs = np.arange(len(runs))
    learned = [bool(v) if v is not None and not pd.isna(v) else True for v in runs["learned"]]
    colours = ["#bbbbbb" if d or not ok else "#2e86c1" for d, ok in zip(runs["degenerate"], learned)]
    bars = ax.bar(xs + 0.2, runs["val_auc"], 0.4, color=colours, label="kept epoch (grey: did not learn)")
    for bar, degenerate in zip(bars, runs["degenerate"]):
        if degenerate:
            bar.set_hatch("//")
    ax.bar(xs - 0.2, runs["epoch0_val_auc"], 0.4, color="#f5b041", label="epoch 0 (untrained)")
    if study_auc:
        marked = [(x, study_auc[r]) for x, r in zip(xs, runs["run"]) if study_auc.get(r) is not None]
        ax.scatter(*zip(*marked), color="black", marker="_", s=300, zorder=3, label="the study (its own data)")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(xs, runs["run"], rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set(ylim=(0, 1), ylabel="val AUC")
    ax.set_title("Custom CNN grid: val AUC before and after training (hatched: degenerate)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return _save(fig, path)


def seed_points(seeds: pd.DataFrame, stability: pd.DataFrame, title: str, path: str | Path | None = None) -> plt.Figure:
    """Val AUC of each screening seed (points) and each configuration's mean (bar), the configurations
    that competed labelled with the share of one-seed draws in which each would have been chosen."""
    _require(seeds, "the per-seed table")
    order = list(dict.fromkeys(seeds["configuration"]))
    means = seeds.groupby("configuration")["val_auc"].mean().reindex(order)
    share = dict(zip(stability["configuration"], stability["share_chosen"]))
    chosen = set(stability.loc[stability["chosen"].astype(bool), "configuration"])
    fig, ax = plt.subplots(figsize=(min(WIDTH, max(5.0, 0.7 * len(order) + 2)), 3.6))
    xs = np.arange(len(order))
    ax.bar(xs, means, 0.6, color=["#2e86c1" if c in chosen else "#aed6f1" for c in order], label="mean over seeds")
    for x, name in zip(xs, order):
        values = seeds.loc[seeds["configuration"] == name, "val_auc"]
        ax.scatter(np.full(len(values), x), values, color="black", s=14, zorder=3)
    labels = [f"{c}\n{share[c]:.0%}" if c in share else c for c in order]
    ax.set_xticks(xs, labels, fontsize=8)
    low = max(0.0, float(seeds["val_auc"].min()) - 0.1)
    ax.set(ylim=(low, 1), ylabel="val AUC", title=title)
    ax.scatter([], [], color="black", s=14, label="one seed")
    ax.legend(fontsize=7, loc="lower right")
    ax.text(0, -0.28, "under each name: share of one-seed draws that would have chosen it", transform=ax.transAxes,
            fontsize=7)  # fmt: skip
    fig.tight_layout()
    return _save(fig, path)


def overfitting_panel(histories: dict[str, pd.DataFrame], path: str | Path | None = None) -> plt.Figure:
    """Train minus val accuracy by epoch, one small panel per run (above 0: fits train better
    than val), all panels on the same axes."""
    _require(histories, "the run histories")
    names = sorted(histories)
    cols = min(6, len(names))
    rows = -(-len(names) // cols)
    size = (min(WIDTH, 1.9 * cols), min(HEIGHT, 0.6 + 1.2 * rows))
    fig, axes = plt.subplots(rows, cols, figsize=size, sharex=True, sharey=True, squeeze=False)
    for ax, name in zip(axes.flat, names):
        history = histories[name]
        ax.plot(history["epoch"], history["accuracy"] - history["val_accuracy"], marker=".", lw=1)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(name.replace(" ", "\n", 1) if len(name) > 14 else name, fontsize=8)  # "transfer\nxception"
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    fig.supxlabel("epoch", fontsize=9)
    fig.supylabel("train - val accuracy", fontsize=9)
    fig.suptitle("Overfitting: train (training mode) minus val accuracy by epoch", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def roc_pr_bands(curves: dict[str, dict], title: str, path: str | Path | None = None) -> plt.Figure:
    """ROC and precision-recall curves with 95 % group-bootstrap bands, one colour per model."""
    _require(curves, "the curves")
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(WIDTH, 3.6))
    for name, c in curves.items():
        line = roc.plot(
            c["fpr"], c["tpr"], label=f"{name} (AUC {c['auc']:.3f} [{c['auc_low']:.3f}, {c['auc_high']:.3f}])"
        )[0]
        roc.fill_between(c["fpr"], c["tpr_low"], c["tpr_high"], color=line.get_color(), alpha=0.2)
        pr.plot(c["recall"], c["precision"], color=line.get_color(), label=name)
        pr.fill_between(c["recall"], c["precision_low"], c["precision_high"], color=line.get_color(), alpha=0.2)
        if "prevalence" in c:
            pr.axhline(c["prevalence"], color=line.get_color(), ls=":", lw=0.8)
    roc.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
    roc.set(xlabel="false positive rate", ylabel="true positive rate")
    pr.set(xlabel="recall (sensitivity)", ylabel="precision (dotted: prevalence)", ylim=(0, 1.02))
    roc.set_title(f"ROC, {title}", fontsize=10)
    pr.set_title(f"Precision-recall, {title}", fontsize=10)
    roc.legend(fontsize=7, loc="lower right")
    pr.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _save(fig, path)


def confusion_grid(panels: dict[str, object], path: str | Path | None = None) -> plt.Figure:
    """Several 2x2 confusion matrices side by side (title -> counts)."""
    _require(panels, "the confusion matrices")
    width = min(3.4, WIDTH / len(panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), min(3.2, width + 0.8)), squeeze=False)
    for ax, (title, counts) in zip(axes[0], panels.items()):
        sns.heatmap(
            counts,
            annot=True,
            fmt="d",
            cbar=False,
            cmap="Blues",
            ax=ax,
            xticklabels=["NONCOVID", "COVID"],
            yticklabels=["NONCOVID", "COVID"],
            annot_kws={"fontsize": 9},
        )
        ax.set(xlabel="predicted", ylabel="true", title=title)
        ax.title.set_fontsize(8)
        ax.tick_params(labelsize=8)
        ax.tick_params(axis="x", labelrotation=0)
        ax.tick_params(axis="y", labelrotation=90)
        ax.xaxis.label.set_fontsize(9)
        ax.yaxis.label.set_fontsize(9)
    fig.tight_layout()
    return _save(fig, path)


def calibration_curves(curves: dict[str, tuple], title: str, path: str | Path | None = None) -> plt.Figure:
    """Reliability curves (mean score vs observed COVID rate per bin) with Brier scores."""
    _require(curves, "the calibration curves")
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8, label="perfectly calibrated")
    for name, (mean, rate, _count, brier) in curves.items():
        ax.plot(mean, rate, marker="o", label=f"{name} (Brier {brier:.3f})")
    ax.set(
        xlabel="mean predicted probability of COVID",
        ylabel="observed COVID rate",
        title=f"Calibration, {title}",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def per_source(table: pd.DataFrame, split: str, path: str | Path | None = None) -> plt.Figure:
    """AUC per source and model with its interval and the images of each class under each bar;
    a source with too few of a class (``MIN_PER_CLASS``) gets no bar but says so
    (rows: model, source, auc, low, high, covid, noncovid, note)."""
    _require(table, "the per-source table")
    sources = sorted(table["source"].unique())
    models = list(dict.fromkeys(table["model"]))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(min(WIDTH, 1.3 * len(sources) + 2.5), 3.6))
    for k, model in enumerate(models):
        part = table[table["model"] == model].set_index("source").reindex(sources)
        xs = np.arange(len(sources)) + k * width
        ax.bar(xs, part["auc"], width, label=model)
        ax.errorbar(
            xs,
            part["auc"],
            yerr=[part["auc"] - part["low"], part["high"] - part["auc"]],
            fmt="none",
            color="black",
            capsize=3,
            lw=1,
        )
        for x, row in zip(xs, part.itertuples()):
            if pd.isna(row.auc):
                ax.text(x, 0.05, "too few", rotation=90, ha="center", va="bottom", fontsize=9, color="#333")
    counts = table.drop_duplicates("source").set_index("source").reindex(sources)
    labels = [f"{s}\n{int(c.covid)} COVID\n{int(c.noncovid)} non-COVID" for s, c in zip(sources, counts.itertuples())]
    ax.set_xticks(np.arange(len(sources)) + width * (len(models) - 1) / 2, labels, fontsize=8)
    ax.axhline(0.5, color="grey", ls=":", lw=0.8)
    ax.set(
        ylim=(0, 1.05),
        ylabel="AUC",
        title=f"AUC per source, {split} (95 % interval; no AUC below {MIN_PER_CLASS} of a class)",
    )
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return _save(fig, path)


def phased_curves(
    head: pd.DataFrame, tune: pd.DataFrame, title: str, kept: tuple[int, int], path: str | Path | None = None
) -> plt.Figure:
    """A transfer run's two phases on one epoch axis: the head on cached features, then
    fine-tuning, with the boundary and each phase's kept epoch marked (AUC and loss, train vs val)."""
    _require(head, "the head phase's history")
    joined = pd.concat([head.assign(phase="head"), tune.assign(phase="fine-tuning", epoch=tune["epoch"] + len(head))])
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.2))
    for ax, metric in zip(axes, ("auc", "loss")):
        ax.plot(joined["epoch"], joined[metric], marker="o", ms=3, label="train (training mode)")
        ax.plot(joined["epoch"], joined[f"val_{metric}"], marker="o", ms=3, label="val")
        ax.axvline(len(head) + 0.5, color="black", lw=1, ls="--", label="fine-tuning starts")
        for epoch in (kept[0], kept[1] + len(head)):
            ax.axvline(epoch, color="grey", ls=":", lw=1)
        ax.set(title=metric, xlabel="epoch (head, then fine-tuning)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _interval_bars(ax: plt.Axes, ys, values, low, high, colour) -> None:
    """Horizontal bars with their interval as error bars."""
    ax.barh(ys, values, color=colour, height=0.6)
    ax.errorbar(values, ys, xerr=[values - low, high - values], fmt="none", color="black", capsize=3, lw=1)


def auc_intervals(
    table: pd.DataFrame, title: str, path: str | Path | None = None, reference: float = 0.5
) -> plt.Figure:
    """AUCs with their 95 % intervals as horizontal bars (rows: label, auc, low, high), a dotted
    line at chance."""
    _require(table, "the AUC table")
    rows = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(WIDTH, min(HEIGHT, 0.35 * len(rows) + 1.2)))
    ys = np.arange(len(rows))
    _interval_bars(ax, ys, rows["auc"], rows["low"], rows["high"], "#2e86c1")
    ax.axvline(reference, color="grey", ls=":", lw=1)
    ax.set_yticks(ys, rows["label"], fontsize=8)
    ax.set(xlim=(0, 1), xlabel="AUC (95 % group-bootstrap interval)", title=title)
    ax.title.set_fontsize(10)
    fig.tight_layout()
    return _save(fig, path)


def matrix_heatmap(matrix: pd.DataFrame, title: str, path: str | Path | None = None, fmt: str = "d") -> plt.Figure:
    """A labelled table of counts as a heat map (e.g. true vs predicted source)."""
    _require(matrix, "the matrix")
    fig, ax = plt.subplots(figsize=(min(WIDTH, 1.1 * matrix.shape[1] + 2.2), min(HEIGHT, 0.8 * matrix.shape[0] + 1.4)))
    sns.heatmap(matrix, annot=True, fmt=fmt, cbar=False, cmap="Blues", ax=ax)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def saliency_grid(
    panels: dict[str, list[tuple[np.ndarray, str]]], title: str, path: str | Path | None = None
) -> plt.Figure:
    """Rows of overlay images (RGB arrays), each row a category (e.g. true positives), each image
    with a short caption (wrapped to its tile); empty cells stay blank. The more columns, the
    smaller the tiles: the grid prints at its own size."""
    _require(panels, "the saliency panels")
    cols = max(1, max(len(images) for images in panels.values()))
    tile = _tile(cols, len(panels), 3, label=0.3)
    size = (0.3 + tile * cols, 0.4 + len(panels) * (tile + 3 * CAPTION_PT * 1.3 / 72))
    fig, axes = plt.subplots(len(panels), cols, figsize=size, squeeze=False)
    for row, (category, images) in enumerate(panels.items()):
        for col in range(cols):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(images):
                picture, caption = images[col]
                ax.imshow(picture)
                ax.set_title(_wrap(caption, tile), fontsize=CAPTION_PT)
        axes[row, 0].text(
            -0.08, 0.5, category, transform=axes[row, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def inflation_bars(table: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Own-test minus clean-test AUC per set-up and model, with intervals (0: no inflation)."""
    _require(table, "the inflation table")
    rows = table.iloc[::-1]
    labels = rows["set-up"] + ", " + rows["model"]
    fig, ax = plt.subplots(figsize=(WIDTH, min(HEIGHT, 0.35 * len(rows) + 1.2)))
    ys = np.arange(len(rows))
    colours = ["#c0392b" if low > 0 else "#7f8c8d" for low in rows["inflation low"]]
    _interval_bars(ax, ys, rows["inflation"], rows["inflation low"], rows["inflation high"], colours)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set(
        xlabel="own-test AUC minus clean-test AUC (95 % interval; red: above 0)",
        title="How much a set-up inflates its own test AUC",
    )
    ax.title.set_fontsize(10)
    fig.tight_layout()
    return _save(fig, path)
