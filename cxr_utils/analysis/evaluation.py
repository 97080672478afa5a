"""Metrics from labels and scores: point values, group-bootstrap confidence intervals,
thresholds chosen on val, ROC/PR bands and calibration.

Confidence intervals resample *groups* (``group_id``: a patient with all their images and
duplicates) with replacement, so images that are not independent are not counted as if they
were. Percentile intervals, seeded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, precision_recall_curve, roc_curve

from ..modeling.training import auc  # the same rank AUC scores training (epoch 0, the kept epoch)

METRICS = ("accuracy", "auc", "sensitivity", "specificity", "ppv", "npv", "f1", "brier")
MIN_PER_CLASS = 10  # below this many images of a class, no AUC is shown ("too few")


def confusion(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """2x2 counts [[TN, FP], [FN, TP]] with COVID (1) as the positive class."""
    actual, predicted = np.asarray(y_true).astype(bool), np.asarray(scores) >= threshold
    tp, fp = int(np.sum(actual & predicted)), int(np.sum(~actual & predicted))
    fn, tn = int(np.sum(actual & ~predicted)), int(np.sum(~actual & ~predicted))
    return np.array([[tn, fp], [fn, tp]])


def basic_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """n, accuracy, AUC (NaN with one class), sensitivity, specificity, positive and negative
    predictive value (PPV, NPV: NaN when nothing is called positive or negative) and F1 at
    ``threshold``, and the Brier score (mean squared error of the scores; no threshold)."""
    (tn, fp), (fn, tp) = confusion(y_true, scores, threshold)
    y_true = np.asarray(y_true).astype(int)
    return {
        "n": int(len(y_true)),
        "accuracy": float((tp + tn) / max(len(y_true), 1)),
        "auc": auc(y_true, scores),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else float("nan"),
        "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
        "ppv": float(tp / (tp + fp)) if tp + fp else float("nan"),
        "npv": float(tn / (tn + fn)) if tn + fn else float("nan"),
        "f1": float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0,
        "brier": float(np.mean((np.asarray(scores, dtype=float) - y_true) ** 2)) if len(y_true) else float("nan"),
    }


def group_members(groups: np.ndarray) -> list[np.ndarray]:
    """The image indices of each group."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)


def _draw(members: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])


def group_resample(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of one bootstrap sample: groups drawn with replacement, each with all its images."""
    return _draw(group_members(groups), rng)


def bootstrap_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, float]]:
    """Each metric's point value and (1 - alpha) percentile interval over group resamples.

    Resamples where a metric is undefined (e.g. one class only, for AUC) are left out of that
    metric's interval; ``n_valid`` says how many resamples it rests on.
    """
    return bootstrap_thresholds(y_true, scores, groups, {"t": threshold}, n_boot, seed, alpha)["t"]


def bootstrap_auc(
    y_true: np.ndarray, scores: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, float]:
    """AUC with its percentile interval over group resamples (AUC alone: what the probes need);
    NaN with one class. Resamples with one class are left out (``n_valid``)."""
    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=float)
    if len(np.unique(y_true)) < 2:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan"), "n_valid": 0}
    rng, members, draws = np.random.default_rng(seed), group_members(groups), []
    for _ in range(n_boot):
        idx = _draw(members, rng)
        value = auc(y_true[idx], scores[idx])
        if not np.isnan(value):
            draws.append(value)
    low, high = _percentile_interval(draws, alpha)
    return {
        "value": auc(y_true, scores),
        "low": float(low),
        "high": float(high),
        "n_valid": len(draws),
    }


def bootstrap_thresholds(
    y_true: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    thresholds: dict[str, float],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`bootstrap_metrics` at several thresholds from the same resamples (one pass)."""
    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=float)
    rng, members = np.random.default_rng(seed), group_members(groups)
    draws = {name: {m: [] for m in METRICS} for name in thresholds}
    for _ in range(n_boot):
        idx = _draw(members, rng)
        for name, threshold in thresholds.items():
            sample = basic_metrics(y_true[idx], scores[idx], threshold)
            for m in METRICS:
                draws[name][m].append(sample[m])
    return {
        name: _intervals(basic_metrics(y_true, scores, threshold), draws[name], n_boot, alpha)
        for name, threshold in thresholds.items()
    }


def _percentile_interval(values, alpha: float) -> tuple[float, float]:
    """The central 1 - ``alpha`` percentile interval of ``values``; NaNs when there are none."""
    if not len(values):
        return float("nan"), float("nan")
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _intervals(point: dict, draws: dict[str, list], n_boot: int, alpha: float) -> dict[str, dict[str, float]]:
    out = {}
    for m in METRICS:
        values = np.array(draws[m], dtype=float)
        values = values[~np.isnan(values)]
        low, high = _percentile_interval(values, alpha)
        out[m] = {"value": point[m], "low": float(low), "high": float(high), "n_valid": int(len(values))}
    out["n"] = {"value": point["n"], "low": point["n"], "high": point["n"], "n_valid": n_boot}
    return out


def youden_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (chosen on val, applied to test)."""
    fpr, tpr, thresholds = roc_curve(np.asarray(y_true).astype(int), scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def roc_band(y_true, scores, groups, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05):
    """ROC on a common false-positive grid: (fpr grid, tpr, tpr low, tpr high)."""
    grid = np.linspace(0, 1, 101)
    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=float)
    fpr, tpr, _ = roc_curve(y_true, scores)
    rng, members, curves = np.random.default_rng(seed), group_members(groups), []
    for _ in range(n_boot):
        idx = _draw(members, rng)
        if len(np.unique(y_true[idx])) == 2:
            f, t, _ = roc_curve(y_true[idx], scores[idx])
            curves.append(np.interp(grid, f, t))
    low, high = np.percentile(curves, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return grid, np.interp(grid, fpr, tpr), low, high


def pr_band(y_true, scores, groups, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05):
    """Precision-recall on a common recall grid: (recall grid, precision, low, high)."""
    grid = np.linspace(0, 1, 101)
    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=float)

    def curve(y, s):
        precision, recall, _ = precision_recall_curve(y, s)
        return np.interp(grid, recall[::-1], precision[::-1])

    rng, members, curves = np.random.default_rng(seed), group_members(groups), []
    for _ in range(n_boot):
        idx = _draw(members, rng)
        if y_true[idx].sum() > 0:
            curves.append(curve(y_true[idx], scores[idx]))
    low, high = np.percentile(curves, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return grid, curve(y_true, scores), low, high


def calibration(y_true, scores, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Reliability curve over equal-width score bins (scikit-learn's ``calibration_curve``):
    (mean score, observed COVID rate, images) of each non-empty bin, and the Brier score."""
    y_true, scores = np.asarray(y_true, dtype=float), np.asarray(scores, dtype=float)
    rate, mean = calibration_curve(y_true, scores, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    count = np.bincount(np.searchsorted(edges[1:-1], scores), minlength=bins)  # the bins calibration_curve uses
    return mean, rate, count[count > 0], float(brier_score_loss(y_true, scores))


def _difference_interval(sets: list[tuple], diffs: list[float], alpha: float) -> dict[str, float]:
    """AUC of the first (y, scores, ...) set minus the second's, with the percentile interval of
    the resampled ``diffs`` (undefined resamples left out, counted in ``n_valid``)."""
    valid = np.array(diffs, dtype=float)
    valid = valid[~np.isnan(valid)]
    value = auc(*sets[0][:2]) - auc(*sets[1][:2])
    low, high = _percentile_interval(valid, alpha)
    return {"value": float(value), "low": float(low), "high": float(high), "n_valid": int(len(valid))}


def bootstrap_auc_difference(
    first: tuple[np.ndarray, np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """AUC on ``first`` minus AUC on ``second`` (each (y, scores, groups)), with a percentile
    interval from resampling each set's groups independently (the two may share no image)."""
    rng = np.random.default_rng(seed)
    sets = [(np.asarray(y).astype(int), np.asarray(s, dtype=float), group_members(g)) for y, s, g in (first, second)]
    diffs = []
    for _ in range(n_boot):
        aucs = []
        for y, s, members in sets:
            idx = _draw(members, rng)
            aucs.append(auc(y[idx], s[idx]))
        diffs.append(aucs[0] - aucs[1])
    return _difference_interval(sets, diffs, alpha)


def paired_auc_difference(
    first: tuple[np.ndarray, np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """AUC on ``first`` minus AUC on ``second`` (each (y, scores, groups)) with a paired percentile
    interval: each resample draws groups once from the union of both sets' groups, and each set is
    scored on its own images of the drawn groups. Where the sets share images (two models on one
    test split; own vs clean test), both scores move together, so an identical pair gives [0, 0];
    sets that share no group are resampled independently, as :func:`bootstrap_auc_difference` does."""
    sets = [
        (np.asarray(y).astype(int), np.asarray(s, dtype=float), np.asarray(g).astype(str))
        for y, s, g in (first, second)
    ]
    union = np.unique(np.concatenate([g for _, _, g in sets]))
    rows_of = [{group: np.flatnonzero(g == group) for group in np.unique(g)} for _, _, g in sets]
    empty = np.array([], dtype=int)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        drawn = union[rng.integers(0, len(union), len(union))]
        aucs = [
            auc(y[idx], s[idx]) if len(idx := np.concatenate([rows.get(k, empty) for k in drawn])) else np.nan
            for (y, s, _), rows in zip(sets, rows_of)
        ]
        diffs.append(aucs[0] - aucs[1])
    return _difference_interval(sets, diffs, alpha)


def auc_row(
    y: np.ndarray, scores: np.ndarray, groups: np.ndarray, n_boot: int, seed: int, min_per_class: int = MIN_PER_CLASS
) -> dict:
    """Images of each class, AUC and its group-bootstrap interval; no AUC ("too few") where a
    class has fewer than ``min_per_class`` images."""
    y = np.asarray(y).astype(int)
    covid, other = int(y.sum()), int(len(y) - y.sum())
    row = {"covid": covid, "noncovid": other}
    if min(covid, other) < min_per_class:
        return {**row, "auc": np.nan, "low": np.nan, "high": np.nan, "note": f"too few (< {min_per_class})"}
    ci = bootstrap_auc(y, scores, groups, n_boot=n_boot, seed=seed)
    return {**row, "auc": ci["value"], "low": ci["low"], "high": ci["high"], "note": ""}


def auc_by_source(
    predictions: pd.DataFrame, n_boot: int, seed: int, min_per_class: int = MIN_PER_CLASS
) -> pd.DataFrame:
    """AUC within every source of a scored split (columns y, score, source, group_id), with the
    images of each class; sources with fewer than ``min_per_class`` of a class get no AUC."""
    return pd.DataFrame(
        [
            {"source": source, **auc_row(part["y"], part["score"], part["group_id"], n_boot, seed, min_per_class)}
            for source, part in predictions.groupby("source")
        ]
    )
