"""Shortcut probes: what a model could be using instead of the disease.

The sources and the labels of this data are confounded (most non-COVID images come from one
collection), and published reviews of COVID-19 chest X-ray models found that such models mostly
learn the hospital, not the disease. The probes here measure how far that goes:

- logistic regressions on file metadata the networks never see (size, aspect, pixel mode, file
  format) and on statistics of the pixels they do see;
- untrained networks and frozen ImageNet features with only a logistic head;
- probes predicting the *source* from the same features: over all sources, and within one label;
- AUC within each source, leave-one-source-out, and a single-source training set;
- occlusion of the lung field, of everything but it, and of equal-area regions outside it;
- paired differences (the same images scored twice) and a verdict that cites every probe.

Every score comes with group-bootstrap intervals (:mod:`cxr_utils.analysis.evaluation`). The lung
field of each image comes from :func:`lung_masks` (one boolean mask per image): in notebook 05 the
segmentation model's mask (:class:`cxr_utils.analysis.lungs.LungFields`), the fixed rectangle
where that mask is flagged; the occlusion and saliency code take whichever mask they are given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import evaluation
from . import saliency as saliency_maps

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
MODES = ("L", "RGB", "RGBA", "P", "LA", "I;16", "I", "1", "F")
FORMATS = (".png", ".jpg", ".jpeg")


# --------------------------------------------------------------------------- image statistics


def image_statistics(gray: np.ndarray, border: float = 0.05) -> dict[str, float]:
    """Statistics of one 8-bit image: intensity mean, spread and percentiles (which carry opacity
    as well as exposure), the share of near-black pixels in the outer border band, and the share
    of near-white pixels in the corners (burned-in text, markers and rulers sit there)."""
    h, w = gray.shape
    band_h, band_w = max(1, int(h * border)), max(1, int(w * border))
    edge = np.concatenate(
        [gray[:band_h].ravel(), gray[-band_h:].ravel(), gray[:, :band_w].ravel(), gray[:, -band_w:].ravel()]
    )
    ch, cw = max(1, h // 6), max(1, w // 6)
    corners = np.concatenate(
        [gray[:ch, :cw].ravel(), gray[:ch, -cw:].ravel(), gray[-ch:, :cw].ravel(), gray[-ch:, -cw:].ravel()]
    )
    stats = {"mean": float(gray.mean()), "std": float(gray.std())}
    stats.update({f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(gray, PERCENTILES))})
    stats["border_black"] = float((edge < 10).mean())
    stats["corner_white"] = float((corners > 245).mean())
    return stats


def pixel_statistics(images: np.ndarray) -> pd.DataFrame:
    """:func:`image_statistics` of each image as a model sees it (uint8 (N, S, S), after the
    project's resize), one row per image in order."""
    return pd.DataFrame([image_statistics(np.asarray(image)) for image in images])


def file_metadata(manifest: pd.DataFrame) -> pd.DataFrame:
    """What the file says, not what it shows: original width, height and aspect ratio, pixel mode
    and file format (one-hot), from the manifest's columns and indexed like it. The networks never
    see these (every image is decoded to gray and resized), and they carry no disease information."""
    suffix = manifest["path"].map(lambda p: Path(p).suffix.lower())
    table = pd.DataFrame(
        {
            "width": manifest["width"].astype(float),
            "height": manifest["height"].astype(float),
            "aspect": manifest["width"] / manifest["height"],
        },
        index=manifest.index,
    )
    for mode in MODES:
        table[f"mode_{mode}"] = (manifest["mode"] == mode).astype(float)
    for fmt in FORMATS:
        table[f"format_{fmt[1:]}"] = (suffix == fmt).astype(float)
    return table


# --------------------------------------------------------------------------- probes


def logistic_probe(seed: int = 0, balanced: bool = False):
    """Standardised features, then a logistic regression (multinomial for several classes);
    ``balanced``: class weights inversely proportional to class sizes (scikit-learn's
    ``class_weight="balanced"``), so a dominant class does not swamp the others."""
    weights = "balanced" if balanced else None
    return make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, class_weight=weights, random_state=seed)
    )


def scores_of(model, x: np.ndarray) -> np.ndarray:
    """P(class 1) of a fitted binary probe."""
    return model.predict_proba(x)[:, 1]


@dataclass
class Scored:
    """Scores on some images (a probe's or a model's), with what the intervals need."""

    name: str
    split: str
    y: np.ndarray
    scores: np.ndarray
    groups: np.ndarray

    def auc(self, n_boot: int, seed: int, min_per_class: int = evaluation.MIN_PER_CLASS) -> dict[str, float]:
        """AUC with its group-bootstrap interval and the images of each class; no AUC ("too few")
        where a class has fewer than ``min_per_class`` images."""
        return {
            "probe": self.name,
            "split": self.split,
            "n": len(self.y),
            **evaluation.auc_row(self.y, self.scores, self.groups, n_boot, seed, min_per_class),
        }


def paired_difference(
    first: Scored, second: Scored, n_boot: int, seed: int, min_per_class: int = evaluation.MIN_PER_CLASS
) -> dict:
    """AUC of ``first`` minus AUC of ``second`` with a paired group-bootstrap interval
    (:func:`cxr_utils.analysis.evaluation.paired_auc_difference`): where the two share images (two
    models, or one model with and without occlusion, on one split) each resample draws the groups
    once and scores both on that draw. "too few" where either has fewer than ``min_per_class``
    images of a class."""
    row = {"split": first.split, "first": first.name, "second": second.name, "n": len(first.y)}
    smallest = min(min(int(s.y.sum()), int(len(s.y) - s.y.sum())) for s in (first, second))
    if smallest < min_per_class:
        empty = dict.fromkeys(("first auc", "second auc", "difference", "low", "high"), np.nan)
        return {**row, **empty, "note": f"too few (< {min_per_class})"}
    diff = evaluation.paired_auc_difference(
        (first.y, first.scores, first.groups), (second.y, second.scores, second.groups), n_boot=n_boot, seed=seed
    )
    return {
        **row,
        "first auc": evaluation.auc(first.y, first.scores),
        "second auc": evaluation.auc(second.y, second.scores),
        "difference": diff["value"],
        "low": diff["low"],
        "high": diff["high"],
        "note": "",
    }


def fit_probe(features: np.ndarray, y: np.ndarray, seed: int, what: str):
    """A logistic probe fitted on ``features``; a clear ValueError naming ``what`` when the rows
    hold a single class (nothing to learn)."""
    if len(np.unique(y)) < 2:
        raise ValueError(f"{what}: {len(y)} training images of a single class; a probe needs both classes")
    return logistic_probe(seed).fit(features, y)


def not_scored(name: str, split: str, reason: str) -> dict:
    """The row of a probe that could not be trained (``reason`` in its note)."""
    return {
        "probe": name,
        "split": split,
        "n": 0,
        "covid": 0,
        "noncovid": 0,
        "auc": np.nan,
        "low": np.nan,
        "high": np.nan,
        "note": reason,
    }


def scored_on(name: str, split: str, model, features: np.ndarray, manifest: pd.DataFrame, mask: np.ndarray) -> Scored:
    """A fitted probe's scores on the masked rows (features row-aligned to ``manifest``)."""
    y = (manifest["label"] == "COVID").to_numpy(int)
    return Scored(name, split, y[mask], scores_of(model, features[mask]), manifest["group_id"].to_numpy()[mask])


def fit_and_score(
    name: str,
    features: np.ndarray,
    manifest: pd.DataFrame,
    seed: int = 0,
    splits: tuple[str, ...] = ("test", "external"),
) -> list[Scored]:
    """Fit a logistic probe on the train rows, score the given splits (features row-aligned to
    ``manifest``; labels from its ``label`` column)."""
    features = np.asarray(features, dtype=float)
    y = (manifest["label"] == "COVID").to_numpy(int)
    split = manifest["split"].to_numpy()
    model = fit_probe(features[split == "train"], y[split == "train"], seed, f"probe '{name}'")
    return [scored_on(name, s, model, features, manifest, split == s) for s in splits if (split == s).any()]


def source_probe(
    features: np.ndarray, sources: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[dict[str, float], pd.DataFrame]:
    """Predict each image's source from its features with a logistic probe with class-balanced
    weights, cross-validated over groups (a group's images are never on both sides). Returns
    accuracy, balanced accuracy (the mean recall over sources: chance is one over the number of
    sources, whatever their sizes), chance and each source's recall ("recall <source>"), and the
    confusion matrix (rows: true source, columns: predicted)."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    probe = logistic_probe(seed, balanced=True)
    predicted = cross_val_predict(probe, features, sources, groups=groups, cv=splitter)
    labels = sorted(set(sources))
    recalls = recall_score(sources, predicted, labels=labels, average=None, zero_division=0)
    matrix = pd.crosstab(pd.Series(sources, name="true source"), pd.Series(predicted, name="predicted"))
    scores = {
        "accuracy": float(accuracy_score(sources, predicted)),
        "balanced accuracy": float(balanced_accuracy_score(sources, predicted)),
        "chance": 1 / len(labels),
        **{f"recall {source}": float(r) for source, r in zip(labels, recalls)},
    }
    return scores, matrix.reindex(index=labels, columns=labels, fill_value=0)


def same_label_probe(
    features: np.ndarray,
    manifest: pd.DataFrame,
    label: str,
    sources: list[str],
    others: list[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    folds: int = 5,
    min_per_class: int = evaluation.MIN_PER_CLASS,
) -> dict:
    """Can the source be told apart *within one label*? Among the images of ``label``, a
    logistic probe (class-balanced weights) tells the images of ``sources`` from those of
    ``others`` (default: every other source), cross-validated over groups; its out-of-fold scores
    give an AUC with a group-bootstrap interval, and a balanced accuracy at 0.5. With the label held
    fixed, any skill is the collection, not the disease. Groups with images on both sides (an image
    copied from one collection into the other cannot be told from itself) are left out. "too few"
    where a side has fewer than ``min_per_class`` images or two groups."""
    source = manifest["source"].to_numpy()
    groups = manifest["group_id"].to_numpy().astype(str)
    of_label = manifest["label"].to_numpy() == label
    first = np.isin(source, sources)
    second = ~first if others is None else np.isin(source, others)
    rows = of_label & (first | second)
    sides = pd.Series(first[rows]).groupby(groups[rows]).nunique()
    shared = sides.index[sides > 1]
    keep = rows & ~np.isin(groups, shared)
    y, g = first[keep].astype(int), groups[keep]
    row = {
        "label": label,
        "first": ", ".join(sources),
        "second": ", ".join(sorted(set(source[second & of_label]))),
        "first images": int(y.sum()),
        "second images": int(len(y) - y.sum()),
        "groups left out": len(shared),
    }
    n_groups = min(len(set(g[y == 1])), len(set(g[y == 0])))
    if min(row["first images"], row["second images"]) < min_per_class or n_groups < 2:
        empty = dict.fromkeys(("auc", "low", "high", "balanced accuracy"), np.nan)
        return {**row, **empty, "note": f"too few (< {min_per_class})"}
    splitter = StratifiedGroupKFold(n_splits=min(folds, n_groups), shuffle=True, random_state=seed)
    probe = logistic_probe(seed, balanced=True)
    scores = cross_val_predict(probe, features[keep], y, groups=g, cv=splitter, method="predict_proba")[:, 1]
    auc = evaluation.auc_row(y, scores, g, n_boot, seed, min_per_class)
    return {
        **row,
        "auc": auc["auc"],
        "low": auc["low"],
        "high": auc["high"],
        "balanced accuracy": float(balanced_accuracy_score(y, scores >= 0.5)),
        "note": "",
    }


# --------------------------------------------------------------------------- per source


def leave_one_source_out(
    features: np.ndarray, manifest: pd.DataFrame, held_out: str, n_boot: int, seed: int = 0
) -> dict:
    """Train a logistic probe on the internal images (train and val) of every source but one and
    score every image of the held-out source: does what is learned transfer across sources?"""
    y = (manifest["label"] == "COVID").to_numpy(int)
    source = manifest["source"].to_numpy()
    internal = manifest["split"].isin(["train", "val"]).to_numpy()
    train, test = internal & (source != held_out), source == held_out
    if len(np.unique(y[train])) < 2:
        return {**not_scored(f"without {held_out}", held_out, "one class in training"), "train_sources": ""}
    model = fit_probe(features[train], y[train], seed, f"without {held_out}")
    scored = scored_on(f"without {held_out}", held_out, model, features, manifest, test)
    return {**scored.auc(n_boot, seed), "train_sources": ", ".join(sorted(set(source[train])))}


def single_source(features: np.ndarray, manifest: pd.DataFrame, source: str, n_boot: int, seed: int = 0) -> list[dict]:
    """Train a logistic probe on one source's training images and score the test images of every
    other source (and the external split); "too few" where a source has fewer than
    ``evaluation.MIN_PER_CLASS`` of a class, "one class in training" where the source has one."""
    y = (manifest["label"] == "COVID").to_numpy(int)
    src, split = manifest["source"].to_numpy(), manifest["split"].to_numpy()
    train = (src == source) & (split == "train")
    others = sorted(set(src) - {source})
    name = f"trained on {source} only"
    if len(np.unique(y[train])) < 2:
        return [not_scored(name, other, "one class in training") for other in others]
    model = fit_probe(features[train], y[train], seed, name)
    out = []
    for other in others:
        mask = (src == other) & np.isin(split, ["test", "external"])
        scored = scored_on(name, other, model, features, manifest, mask)
        out.append(scored.auc(n_boot, seed))
    return out


# --------------------------------------------------------------------------- untrained network


def untrained_cnn_features(images: np.ndarray, params: dict, seed: int, batch_size: int = 64) -> np.ndarray:
    """The custom CNN of a run's configuration at initialisation (seeded, never trained): its
    Dense(512) activations for gray uint8 images (N, S, S) at the run's ``image_size``."""
    import keras

    from ..modeling import models, training

    training.seed_everything(seed)
    net = models.custom_cnn_from(params, "sigmoid")
    features = keras.Model(net.inputs, net.get_layer("dense").output)
    x = saliency_maps.model_images(net, images)
    return np.asarray(features.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)


# --------------------------------------------------------------------------- occlusion

AS_IS, LUNGS_HIDDEN, ONLY_LUNGS = "as is", "lungs hidden", "only lungs"
OUTSIDE = "equal area outside the lungs"  # the random-region control: f"{OUTSIDE}, draw {k}"


def lung_masks(images: np.ndarray, segment: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The lung field of each image, boolean (N, S, S), for images (N, S, S). ``segment``: a
    function giving one mask per image (a segmentation model); None gives the fixed central
    rectangle of :func:`cxr_utils.analysis.saliency.central_lung_mask` for every image."""
    images = np.asarray(images)
    if segment is None:
        return np.broadcast_to(saliency_maps.central_lung_mask(images.shape[1]), images.shape[:3])
    masks = np.asarray(segment(images), dtype=bool)
    if masks.shape != images.shape[:3]:
        raise ValueError(f"lung masks must be one (S, S) mask per image, {images.shape[:3]}; got {masks.shape}")
    return masks


def occlude(images: np.ndarray, mask: np.ndarray, keep_inside: bool = False) -> np.ndarray:
    """Hide the masked region (``keep_inside=False``) or everything but it (``True``) by filling
    it with the image's mean over the pixels left visible: a neutral grey that carries nothing of
    what it hides (the mean of the whole image, or a blur, would keep a trace of a bright marker).
    Images (N, S, S) uint8; a boolean mask (S, S) for every image or one per image (N, S, S). An
    image with nothing left visible is filled with 0."""
    images = np.asarray(images)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape not in (images.shape[1:3], images.shape[:3]):
        raise ValueError(f"mask {mask.shape} must be (S, S) or (N, S, S) for images {images.shape}")
    hide = np.broadcast_to(~mask if keep_inside else mask, images.shape)
    visible = ~hide
    count = visible.sum(axis=(1, 2))
    total = np.where(visible, images, 0).sum(axis=(1, 2), dtype=np.float64)
    fill = np.round(np.where(count > 0, total / np.maximum(count, 1), 0)).astype(images.dtype)
    return np.where(hide, fill[:, None, None], images)


def random_regions(masks: np.ndarray, rng: np.random.Generator, grid: int = 8) -> np.ndarray:
    """Per image, a random region of the same area as its mask, lying outside the mask: the cells
    of a ``grid`` x ``grid`` tiling, each cut to its part outside the mask, taken in random order
    until the region holds as many pixels as the mask (the last cell only in part, row by row).
    Where the outside is smaller than the mask, the region is all of the outside. Boolean
    (N, S, S) for masks (N, S, S)."""
    masks = np.asarray(masks, dtype=bool)
    size = masks.shape[1]
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    cells = [(edges[i], edges[i + 1], edges[j], edges[j + 1]) for i in range(grid) for j in range(grid)]
    regions = np.zeros(masks.shape, dtype=bool)
    for region, mask in zip(regions, masks):
        needed = int(mask.sum())
        for k in rng.permutation(len(cells)):
            if needed <= 0:
                break
            top, bottom, left, right = cells[k]
            rows, cols = np.nonzero(~mask[top:bottom, left:right])
            rows, cols = rows[:needed], cols[:needed]
            region[top + rows, left + cols] = True
            needed -= len(rows)
    return regions


def occlusion_conditions(lungs: np.ndarray, draws: int, seed: int) -> Iterator[tuple[str, np.ndarray | None]]:
    """What each occlusion condition hides, as (condition, boolean (N, S, S) mask to hide; None
    for the images as they are): the lungs; everything but the lungs; and ``draws`` random regions
    of the lungs' area outside them (:func:`random_regions`, seeded by ``seed`` and the draw)."""
    yield AS_IS, None
    yield LUNGS_HIDDEN, np.asarray(lungs, dtype=bool)
    yield ONLY_LUNGS, ~np.asarray(lungs, dtype=bool)
    for draw in range(1, draws + 1):
        yield f"{OUTSIDE}, draw {draw}", random_regions(lungs, np.random.default_rng([seed, draw]))


def kept_share(hidden_auc: float, auc: float) -> float:
    """How much of a model's discrimination above chance (AUC - 0.5) it keeps with a region hidden."""
    return (hidden_auc - 0.5) / (auc - 0.5) if auc > 0.5 else float("nan")


# --------------------------------------------------------------------------- verdict

VISIBLE, TRIVIAL = 0.5, 0.9  # balanced accuracy above which the sources are clearly / almost always told apart
SEPARATED = 0.8  # same-label AUC from which the source is "clearly" visible within one label
DROP = 0.10  # fall in AUC from the internal test split to a held-out source: "does not carry"
CLOSE = 0.05  # AUC differences below this are "essentially the same"
KEPT = 0.5  # share of its discrimination above chance a model keeps with the lungs hidden: "uses a good deal outside"
FAIL = 0.6  # external AUC below which a baseline "fails" there
RADIOGRAPHY_UPSTREAM = (
    "its Normal images come from the RSNA pneumonia challenge and a paediatric pneumonia set, its COVID "
    "images from other public collections, Cohen's and Figure1's among them"
)


def _number(value: float) -> str:
    """An AUC to two decimals, or "n/a (too few)" where none could be computed."""
    return "n/a (too few)" if np.isnan(value) else f"{value:.2f}"


def _interval(row) -> str:
    return f"{row['auc']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"


def _signed(row) -> str:
    return f"{row['difference']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"


def _model_name(model: str) -> str:
    """'custom final_run02_seed1' or 'trained custom model (run02, seed 1)' -> 'the custom model'."""
    words = model.split()
    return f"the {words[1] if words[0] == 'trained' else words[0]} model"


def source_sentences(source_probe: pd.DataFrame) -> list[str]:
    """The four-way source probe, one sentence per feature set (rows of the source-probe table)."""
    lines = []
    for row in source_probe.to_dict("records"):
        balanced = row["balanced accuracy"]
        how = "almost always" if balanced >= TRIVIAL else "clearly" if balanced >= VISIBLE else "only partly"
        recalls = ", ".join(f"{k[len('recall ') :]} {v:.2f}" for k, v in row.items() if k.startswith("recall "))
        lines.append(
            f"With class-balanced weights, a probe on {row['features']} features names the source of an image with "
            f"balanced accuracy {balanced:.2f} (chance {row['chance']:.2f}; recall {recalls}); thresholds "
            f"{VISIBLE:.2f} for clearly and {TRIVIAL:.2f} for almost always: the sources are {how} told apart."
        )
    return lines


def _same_label_visible(row) -> bool:
    return bool(row["low"] > 0.5) if not np.isnan(row["low"]) else False


def same_label_sentences(same_label: pd.DataFrame) -> list[str]:
    """The same-label source probes, one sentence per label (rows: features, label, first, second,
    first images, second images, groups left out, auc, low, high, note)."""
    lines = []
    for label, rows in same_label.groupby("label", sort=False):
        first = rows.iloc[0]
        shown = "non-COVID" if label == "NONCOVID" else label
        what = (
            f"Within the {shown} images alone, {first['first']} ({first['first images']}) against "
            f"{first['second']} ({first['second images']}; {first['groups left out']} groups copied across them "
            "left out)"
        )
        scored = rows[rows["auc"].notna()]
        if scored.empty:
            lines.append(f"{what}: too few images for a probe ({first['note']}).")
            continue
        aucs = "; ".join(f"AUC {_interval(r)} from {r['features']} features" for r in scored.to_dict("records"))
        visible = [r for r in scored.to_dict("records") if _same_label_visible(r)]
        if any(r["auc"] >= SEPARATED for r in visible):
            finding = "the source is clearly visible with the label held fixed"
        elif visible:
            finding = "the source is visible with the label held fixed"
        else:
            finding = "no source difference is shown within this label"
        lines.append(
            f"{what}: {aucs}; threshold: an interval above 0.50 means the source is visible within one label, "
            f"an AUC of {SEPARATED:.2f} or more that it is clearly visible: {finding}."
        )
    return lines


def _frozen_test(baselines: pd.DataFrame) -> pd.DataFrame:
    return baselines[baselines["probe"].str.startswith("frozen ") & (baselines["split"] == "test")]


def fallen_sources(cross_source: pd.DataFrame, baselines: pd.DataFrame) -> list[str]:
    """The held-out sources where the frozen-feature head scores more than ``DROP`` below its
    internal test AUC (rows of the cross-source and baselines tables)."""
    frozen = _frozen_test(baselines)
    if frozen.empty:
        return []
    inside = float(frozen["auc"].iloc[0])
    return [row["split"] for row in cross_source.to_dict("records") if inside - row["auc"] > DROP]


def cross_source_sentence(cross_source: pd.DataFrame, baselines: pd.DataFrame) -> str | None:
    """Leave one source out (and one source only) against the same head's internal test AUC."""
    frozen = _frozen_test(baselines)
    if cross_source.empty or frozen.empty:
        return None
    parts = []
    for row in cross_source.to_dict("records"):
        how = "trained on the other sources" if row["probe"].startswith("without") else row["probe"]
        note = f": {row['note'] or 'not scored'}" if np.isnan(row["auc"]) else f" {_interval(row)}"
        parts.append(f"{row['split']} ({how}){note}")
    fallen = fallen_sources(cross_source, baselines)
    finding = (
        f"it falls by more than {DROP:.2f} on {', '.join(fallen)}: what the head learns about the label in some "
        "sources does not carry to another"
        if fallen
        else f"it falls by {DROP:.2f} or less wherever it was scored"
        if not np.isnan(frozen["auc"].iloc[0]) and cross_source["auc"].notna().any()
        else "too few images to compare"
    )
    return (
        f"A logistic head on {frozen['probe'].iloc[0].removesuffix(' + logistic head')} features scores test AUC "
        f"{_number(frozen['auc'].iloc[0])} on the internal test split, and out of source: "
        + "; ".join(parts)
        + f"; threshold: a fall of more than {DROP:.2f}: {finding}."
    )


def _auc_of(baselines: pd.DataFrame, prefix: str, split: str = "test") -> float:
    rows = baselines[baselines["probe"].str.startswith(prefix) & (baselines["split"] == split)]
    return float(rows["auc"].iloc[0]) if len(rows) else float("nan")


def _trained(baselines: pd.DataFrame) -> dict[str, float]:
    trained = baselines[baselines["probe"].str.startswith("trained ") & (baselines["split"] == "test")]
    return {_model_name(r.probe): r.auc for r in trained.itertuples()}


def matched_models(baselines: pd.DataFrame, prefix: str) -> list[str]:
    """The trained models whose test AUC the baseline named by ``prefix`` comes within ``CLOSE`` of."""
    return [name for name, auc in _trained(baselines).items() if _auc_of(baselines, prefix) >= auc - CLOSE]


METADATA, PIXELS = "image statistics: file metadata", "image statistics: pixels the model sees"


def baseline_sentences(baselines: pd.DataFrame) -> list[str]:
    """File metadata and pixel statistics against the trained models (rows of the baselines table)."""

    def external(prefix: str) -> str:
        value = _auc_of(baselines, prefix, "external")
        return f" (external {value:.2f})" if not np.isnan(value) else ""

    models = _trained(baselines)
    lines = [
        "A logistic head on file metadata that the networks never see (original width, height, aspect, pixel mode, "
        f"file format) reaches test AUC {_number(_auc_of(baselines, METADATA))}{external(METADATA)}; on statistics "
        "of the pixels they do see (intensity percentiles, which carry opacity as well as exposure, and border and "
        f"corner shares), {_number(_auc_of(baselines, PIXELS))}{external(PIXELS)}; the trained models reach "
        + (", ".join(f"{_number(auc)} ({name})" for name, auc in models.items()) or "nothing")
        + " on test."
    ]
    for prefix, what, reading in (
        (METADATA, "file metadata alone", "can be matched without looking at the image"),
        (PIXELS, "whole-image intensity statistics", "need no more than global intensity"),
    ):
        if close := matched_models(baselines, prefix):
            fails = _auc_of(baselines, prefix, "external") < FAIL
            lines.append(
                f"On test, {what} come within {CLOSE:.2f} of (or above) {', '.join(close)}: those test scores {reading}"
                + (f" (not on the external source, where they fall below {FAIL:.2f})." if fails else ".")
            )
    return lines


def difference_sentences(differences: pd.DataFrame) -> list[str]:
    """Each paired comparison of the differences table (question, split, first, second, first auc,
    second auc, difference, low, high, note), on test with external beside it."""
    lines = []
    if differences.empty:
        return lines
    for (first, second), rows in differences.groupby(["first", "second"], sort=False):
        test = rows[rows["split"] == "test"]
        if test.empty or np.isnan(test["difference"].iloc[0]):
            lines.append(
                f"{first[0].upper() + first[1:]} against {second} on test: too few images of a class for a paired "
                "difference."
            )
            continue
        row = test.iloc[0]
        small = f", by less than {CLOSE:.2f}" if max(abs(row["low"]), abs(row["high"])) < CLOSE else ""
        if row["high"] < 0:
            finding = f"{first} is worse{small}"
        elif row["low"] > 0:
            finding = f"{first} is better{small}"
        elif small:
            finding = f"essentially the same (the interval rules out a difference of {CLOSE:.2f} or more)"
        else:
            finding = "no difference shown on these images"
        ext = rows[(rows["split"] == "external") & rows["difference"].notna()]
        external = f"; external {_signed(ext.iloc[0])}" if len(ext) else ""
        lines.append(
            f"{first[0].upper() + first[1:]} scores test AUC {row['first auc']:.3f}, {second} "
            f"{row['second auc']:.3f}: difference {_signed(row)} (paired bootstrap over the same images{external}); "
            f"threshold: an interval below or above 0 is worse or better, an interval inside ±{CLOSE:.2f} essentially "
            f"the same: {finding}."
        )
    return lines


def _occlusion_facts(model: str, split: str, occlusion: pd.DataFrame, differences: pd.DataFrame) -> dict | None:
    """Kept shares and paired differences of one model on one split, or None without an AUC as is."""
    rows = occlusion[(occlusion["model"] == model) & (occlusion["split"] == split)].set_index("condition")
    if AS_IS not in rows.index or np.isnan(rows.loc[AS_IS, "auc"]) or LUNGS_HIDDEN not in rows.index:
        return None
    auc = rows.loc[AS_IS, "auc"]
    draws = [c for c in rows.index if c.startswith(OUTSIDE)]
    versus = differences[
        (differences["model"] == model)
        & (differences["split"] == split)
        & (differences["second"] == LUNGS_HIDDEN)
        & differences["first"].str.startswith(OUTSIDE)
    ]
    return {
        "auc": auc,
        "hidden": rows.loc[LUNGS_HIDDEN, "auc"],
        "kept": kept_share(rows.loc[LUNGS_HIDDEN, "auc"], auc),
        "control": [kept_share(rows.loc[c, "auc"], auc) for c in draws],
        "differences": versus["difference"].to_numpy(),
        "above": int((versus["low"] > 0).sum()),
        "draws": len(versus),
    }


def occlusion_reading(facts: dict) -> tuple[bool, str]:
    """(uses a good deal outside the lungs: keeps ``KEPT`` or more with them hidden; in how many random
    draws hiding the lungs cost more than hiding an equal area elsewhere, the paired interval above 0:
    "every", "some" or "none")."""
    above, draws = facts["above"], facts["draws"]
    return bool(facts["kept"] >= KEPT), "every" if draws and above == draws else "some" if above else "none"


def occlusion_sentences(occlusion: pd.DataFrame, differences: pd.DataFrame) -> list[str]:
    """Per model: what it keeps with the lungs hidden, read against equal areas hidden outside them."""
    lines = []
    if occlusion.empty:
        return lines
    for model in occlusion["model"].unique():
        name = _model_name(model)
        test = _occlusion_facts(model, "test", occlusion, differences)
        if test is None:
            lines.append(f"{name[0].upper() + name[1:]}: too few test images of a class for occlusion AUCs.")
            continue
        if np.isnan(test["kept"]):
            lines.append(f"{name[0].upper() + name[1:]} scores test AUC {test['auc']:.2f}: no discrimination to lose.")
            continue
        control = f"{min(test['control']):.0%}-{max(test['control']):.0%}" if test["control"] else "not measured"
        diffs = test["differences"]
        ends = dict.fromkeys(f"{d:+.2f}" for d in (diffs.min(), diffs.max())) if test["draws"] else {}
        spread = " to ".join(ends) or "not measured"
        line = (
            f"With the lung field filled with the mean of the rest of each image, {name} scores test AUC "
            f"{test['hidden']:.2f} instead of {test['auc']:.2f}, keeping {test['kept']:.0%} of its discrimination "
            f"above chance; with an equal area hidden outside the lungs ({test['draws']} random draws) it keeps "
            f"{control}, and scores {spread} more than with the lungs hidden (paired interval above 0 in "
            f"{test['above']} of {test['draws']} draws)"
        )
        external = _occlusion_facts(model, "external", occlusion, differences)
        if external is not None and not np.isnan(external["kept"]) and external["control"]:
            line += (
                f" (external: keeps {external['kept']:.0%} with the lungs hidden, "
                f"{min(external['control']):.0%}-{max(external['control']):.0%} with an equal area outside)"
            )
        outside, specific = occlusion_reading(test)
        finding = {
            (True, "every"): "it uses a good deal outside the lungs, though hiding them costs more than hiding as "
            "much elsewhere",
            (True, "some"): f"it uses a good deal outside the lungs; hiding them cost more than hiding as much "
            f"elsewhere in {test['above']} of {test['draws']} draws, so the lungs' own share is not settled",
            (True, "none"): "it uses a good deal outside the lungs, and hiding them costs no more than hiding as "
            "much elsewhere",
            (False, "every"): "most of its discrimination needs the lung field, more than an equal area elsewhere",
            (False, "some"): f"hiding the lungs costs much of its discrimination, more than hiding as much elsewhere "
            f"in {test['above']} of {test['draws']} draws",
            (False, "none"): "hiding the lungs costs much of its discrimination, but hiding as much elsewhere costs "
            "as much: the drop shows that large occlusions disturb it, not that it needs the lungs",
        }[(outside, specific)]
        lines.append(
            f"{line}; thresholds: keeping {KEPT:.0%} or more means it uses a good deal outside the lungs, and the "
            f"lungs matter more than an equal area elsewhere when the paired interval is above 0 in every draw: "
            f"{finding}."
        )
    return lines


def within_radiography_sentence(within: pd.DataFrame) -> str | None:
    """What AUC inside the Radiography Database measures: two upstream collections, not one hospital."""
    rows = within[(within["source"] == "radiography") & (within["split"] == "test")]
    if rows.empty:
        return None
    first = rows.iloc[0]
    scores = "; ".join(
        f"{_model_name(r['model'])} {_interval(r)}" if not np.isnan(r["auc"]) else f"{_model_name(r['model'])}: too few"
        for r in rows.to_dict("records")
    )
    return (
        f"Inside the Radiography Database's test images ({first['covid']} COVID, {first['noncovid']} non-COVID; no AUC "
        f"below {evaluation.MIN_PER_CLASS} of a class): {scores}. This is not a disease test inside one hospital: "
        f"{RADIOGRAPHY_UPSTREAM}, so the two classes are two collections there too."
    )


def saliency_sentences(saliency: pd.DataFrame) -> list[str]:
    """Grad-CAM mass in the lung field and the border band against their areas (rows of the saliency table)."""
    return [
        f"Grad-CAM puts {row['lung field share']:.0%} of {_model_name(row['model'])}'s saliency in the lung field and "
        f"{row['border share']:.0%} in the border band (an evenly spread map: {row['lung field area']:.0%} and "
        f"{row['border area']:.0%}, their areas)."
        for row in saliency.to_dict("records")
        if not np.isnan(row["lung field share"])
    ]


def verdict(
    *,
    source_probe: pd.DataFrame,
    same_label: pd.DataFrame,
    baselines: pd.DataFrame,
    differences: pd.DataFrame,
    cross_source: pd.DataFrame,
    within: pd.DataFrame,
    occlusion: pd.DataFrame,
    occlusion_differences: pd.DataFrame,
    saliency: pd.DataFrame,
) -> list[str]:
    """Plain sentences from the tables, each with the threshold it uses, and a conclusion (last)
    naming the probes that argue against reading the scores as detection of the disease."""
    lines = source_sentences(source_probe) + same_label_sentences(same_label)
    lines += [s for s in (cross_source_sentence(cross_source, baselines), within_radiography_sentence(within)) if s]
    lines += baseline_sentences(baselines) + difference_sentences(differences)
    lines += occlusion_sentences(occlusion, occlusion_differences) + saliency_sentences(saliency)

    reasons = []
    if matched_models(baselines, METADATA):
        reasons.append("file metadata the networks never see match their test scores")
    if any(_same_label_visible(r) for r in same_label.to_dict("records")):
        reasons.append("the source can be read off the features with the label held fixed")
    if fallen_sources(cross_source, baselines):
        reasons.append(f"a head trained on some sources loses more than {DROP:.2f} of AUC on another")
    untrained = (
        differences[differences["second"].str.startswith("untrained") & (differences["split"] == "test")]
        if len(differences)
        else differences
    )
    if len(untrained) and (untrained["high"] < CLOSE).any():
        reasons.append(
            f"training the custom network added less than {CLOSE:.2f} of AUC to a logistic head on its untrained "
            "features (the upper end of the paired interval)"
        )
    models = occlusion["model"].unique() if len(occlusion) else []
    facts = [_occlusion_facts(model, "test", occlusion, occlusion_differences) for model in models]
    no_lung_effect = [
        _model_name(model)
        for model, f in zip(models, facts)
        if f is not None and not np.isnan(f["kept"]) and f["draws"] and occlusion_reading(f)[1] == "none"
    ]
    if no_lung_effect:
        reasons.append(
            f"hiding the lungs costs {' and '.join(no_lung_effect)} no more than hiding an equal area elsewhere, "
            "in every draw"
        )
    unmeasured = [
        what
        for what, measured in (
            ("the same-label probes", same_label["auc"].notna().any() if len(same_label) else False),
            ("the paired differences", differences["difference"].notna().any() if len(differences) else False),
            ("the occlusion", any(f is not None for f in facts)),
        )
        if not measured
    ]
    if reasons:
        conclusion = "These numbers do not show that the models detect COVID-19: " + "; ".join(reasons) + "."
    elif unmeasured:
        conclusion = (
            f"Too few images to read {', '.join(unmeasured)}; none of the probes that could be scored explains the "
            "models' scores away, though none can prove they see the disease."
        )
    else:
        conclusion = (
            "None of these probes explains the models' scores away, though none can prove they see the disease."
        )
    lines.append(conclusion)
    return lines
