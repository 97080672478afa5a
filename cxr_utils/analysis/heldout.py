"""Score a model chosen on val: the threshold from val, then test and external once each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..data import datasets
from ..modeling import backbones, features, training
from ..modeling.precision import apply_recorded, recorded_policy
from . import evaluation

if TYPE_CHECKING:
    import keras

SCORED_SPLITS = ("val", "test", "external")
HELDOUT_SPLITS = ("test", "external")
REPORTED_SPLITS = ("val", *HELDOUT_SPLITS)  # val too: its intervals show how much a choice on val can move


def load_run_model(result: dict) -> keras.Model:
    """The saved best model of a run (transfer models need their preprocessing layer)."""
    import keras

    path = Path(result["folder"]) / training.MODEL_FILE
    return backbones.load_model(path) if result["kind"] == "transfer" else keras.saving.load_model(path)


def scorer(result: dict) -> Callable[[datasets.SplitArrays], np.ndarray]:
    """A function giving a run's P(COVID) for a loaded split. A frozen-backbone transfer run is
    scored as it was trained: its head on the cached features (computed where missing; equal to
    the end-to-end model within 1e-4, tested); other runs through their saved model."""
    effective = result["effective"]
    if result["kind"] == "transfer" and not effective.get("fine_tune_layers"):
        return _feature_scorer(result)
    model = load_run_model(result)

    def score(arrays: datasets.SplitArrays) -> np.ndarray:
        data = datasets.make_dataset(arrays, batch_size=32, channels=effective.get("channels", 3))
        return training.predict(model, data)

    return score


def _feature_scorer(result: dict) -> Callable[[datasets.SplitArrays], np.ndarray]:
    import keras

    effective = result["effective"]
    weights = backbones.Weights.from_record(result["weights"])
    policy = recorded_policy(result)
    cache = features.cache_folder(effective["backbone"], weights, effective["image_size"], policy)
    head = keras.saving.load_model(Path(result["folder"]) / "head" / training.MODEL_FILE)

    def build():
        apply_recorded(policy, "as the run was trained")
        return backbones.build_extractor(effective["backbone"], weights, effective["image_size"])

    def score(arrays: datasets.SplitArrays) -> np.ndarray:
        found = features.extract_lazily(build, arrays.x, arrays.rows["sha256"].tolist(), cache)
        return training.predict(head, found.features)

    return score


def score_split(
    result: dict,
    manifest: pd.DataFrame,
    split: str,
    root: Path,
    score: Callable[[datasets.SplitArrays], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Scores (probability of COVID) of a run's model on every readable image of one split.

    Returns (y, scores, rows, failures): ``failures`` lists the images that could not be read.
    """
    arrays = datasets.load_split(manifest, split, result["effective"]["image_size"], root=root)
    return arrays.y, (score or scorer(result))(arrays), arrays.rows, arrays.failures


def evaluate_chosen(
    result: dict, manifest: pd.DataFrame, root: Path, *, n_boot: int = 1000, seed: int = 0, figures: bool = True
) -> dict:
    """Score a model chosen on val: the threshold from val, then test and external once each.

    Returns ``predictions`` (image_id, source, group_id, split, y, score), ``failures`` (images
    that could not be read, with the split), ``threshold``, ``metrics`` {split: {"0.5": CIs,
    "val_threshold": CIs}} for val, test and external, ``calibration`` {split: (mean, rate, count,
    brier)}, and, with ``figures``, ``curves`` {split: ROC/PR bands} (splits with both labels
    only) and ``per_source`` (test AUC per source with intervals and images per class).
    """
    score = scorer(result)
    frames, failed = [], []
    for split in SCORED_SPLITS:
        if not (manifest["split"] == split).any():
            continue
        y, scores, rows, failures = score_split(result, manifest, split, root, score)
        frames.append(rows[["image_id", "source", "group_id", "split"]].assign(y=y, score=scores))
        failed.append(failures.assign(split=split))
    predictions = pd.concat(frames, ignore_index=True)
    val = predictions[predictions["split"] == "val"]
    threshold = evaluation.youden_threshold(val["y"], val["score"]) if val["y"].nunique() == 2 else 0.5
    out = {
        "predictions": predictions,
        "failures": pd.concat(failed, ignore_index=True),
        "threshold": threshold,
        "metrics": {},
        "curves": {},
        "calibration": {},
    }
    for split in REPORTED_SPLITS:
        part = predictions[predictions["split"] == split]
        if part.empty:
            continue
        y, s, g = part["y"].to_numpy(), part["score"].to_numpy(), part["group_id"].to_numpy()
        out["metrics"][split] = evaluation.bootstrap_thresholds(
            y, s, g, {"0.5": 0.5, "val_threshold": threshold}, n_boot=n_boot, seed=seed
        )
        if split == "val":
            continue  # the threshold was chosen here: intervals only, no curves
        out["calibration"][split] = evaluation.calibration(y, s)
        if figures and len(np.unique(y)) == 2:
            out["curves"][split] = band_curves(y, s, g, out["metrics"][split]["0.5"]["auc"], n_boot, seed)
    test = predictions[predictions["split"] == "test"]
    out["per_source"] = evaluation.auc_by_source(test, n_boot, seed) if figures else pd.DataFrame()
    return out


def band_curves(y: np.ndarray, s: np.ndarray, g: np.ndarray, auc: dict, n_boot: int, seed: int) -> dict:
    """ROC and precision-recall bands, the AUC with its interval, and the prevalence (the
    precision of a model that cannot tell the classes apart)."""
    fpr, tpr, tlow, thigh = evaluation.roc_band(y, s, g, n_boot=n_boot, seed=seed)
    recall, precision, plow, phigh = evaluation.pr_band(y, s, g, n_boot=n_boot, seed=seed)
    return {
        "prevalence": float(np.mean(y)),
        "fpr": fpr,
        "tpr": tpr,
        "tpr_low": tlow,
        "tpr_high": thigh,
        "recall": recall,
        "precision": precision,
        "precision_low": plow,
        "precision_high": phigh,
        "auc": auc["value"],
        "auc_low": auc["low"],
        "auc_high": auc["high"],
    }


def metrics_rows(model: str, evaluated: dict) -> list[dict]:
    """Flatten :func:`evaluate_chosen`'s intervals: one row per split, threshold and metric."""
    rows = []
    for split, by_threshold in evaluated["metrics"].items():
        for threshold_name, metrics in by_threshold.items():
            threshold = 0.5 if threshold_name == "0.5" else evaluated["threshold"]
            for metric, ci in metrics.items():
                if metric == "n":
                    continue
                rows.append(
                    {
                        "model": model,
                        "split": split,
                        "threshold": round(threshold, 4),
                        "metric": metric,
                        "value": ci["value"],
                        "low": ci["low"],
                        "high": ci["high"],
                        "n": metrics["n"]["value"],
                    }
                )
    return rows


def write_predictions(evaluated: dict, folder: Path) -> None:
    """The chosen models' scores, one CSV per model (keys: :class:`~cxr_utils.reporting.collect.RunKey`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, ev in evaluated.items():
        ev["predictions"].to_csv(folder / f"{key.slug}.csv", index=False)
