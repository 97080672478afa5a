"""Shortcut probes: what a model could be using instead of the disease.

The sources and the labels of this data are confounded (most non-COVID images come from one
collection), and published reviews of COVID-19 chest X-ray models found that such models mostly
learn the hospital, not the disease. The probes here measure how far that goes:

- a logistic regression on image statistics that carry no disease information;
- untrained networks and frozen ImageNet features with only a logistic head;
- a probe predicting the *source* from the same features;
- AUC within each source, leave-one-source-out, and a single-source training set;
- occlusion of the central lung field, or of everything but it.

Every score comes with group-bootstrap intervals (:mod:`cxr_utils.analysis.evaluation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data.images import ImageReadError, load_gray8
from . import evaluation
from . import saliency as saliency_maps

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
MODES = ("L", "RGB", "RGBA", "P", "LA", "I;16", "I", "1", "F")
FORMATS = (".png", ".jpg", ".jpeg")


# --------------------------------------------------------------------------- trivial features


def image_statistics(gray: np.ndarray, border: float = 0.05) -> dict[str, float]:
    """Statistics of one decoded 8-bit image that carry no disease information: intensity mean,
    spread and percentiles, the share of near-black pixels in the outer border band, and the
    share of near-white pixels in the corners (burned-in text, markers and rulers sit there)."""
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


def trivial_features(manifest: pd.DataFrame, root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row of disease-free features per image (statistics, original width/height/aspect,
    pixel mode and file format as one-hot columns), indexed like ``manifest``; and the images
    that could not be read (skipped, with the reason)."""
    rows, failures = {}, []
    for row in manifest.itertuples():
        try:
            stats = image_statistics(load_gray8(Path(root) / row.path))
        except ImageReadError as err:
            failures.append({"image_id": row.image_id, "path": row.path, "reason": err.reason})
            continue
        stats.update(width=float(row.width), height=float(row.height), aspect=row.width / row.height)
        stats.update({f"mode_{m}": float(row.mode == m) for m in MODES})
        suffix = Path(row.path).suffix.lower()
        stats.update({f"format_{f[1:]}": float(suffix == f) for f in FORMATS})
        rows[row.Index] = stats
    return pd.DataFrame.from_dict(rows, orient="index"), pd.DataFrame(failures, columns=["image_id", "path", "reason"])


# --------------------------------------------------------------------------- probes


def logistic_probe(seed: int = 0):
    """Standardised features, then a logistic regression (multinomial for several classes)."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))


def scores_of(model, x: np.ndarray) -> np.ndarray:
    """P(class 1) of a fitted binary probe."""
    return model.predict_proba(x)[:, 1]


@dataclass
class Scored:
    """A probe's scores on some images, with what the intervals need."""

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
    y = (manifest["label"] == "COVID").to_numpy(int)
    split = manifest["split"].to_numpy()
    model = fit_probe(features[split == "train"], y[split == "train"], seed, f"probe '{name}'")
    return [scored_on(name, s, model, features, manifest, split == s) for s in splits if (split == s).any()]


def source_probe(
    features: np.ndarray, sources: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[dict[str, float], pd.DataFrame]:
    """Predict each image's source from its features with a logistic probe, cross-validated over
    groups (a group's images are never on both sides). Returns accuracy, balanced accuracy (the
    mean recall over sources: chance is one over the number of sources, whatever their sizes) and
    chance, and the confusion matrix (rows: true source, columns: predicted)."""
    from sklearn.metrics import balanced_accuracy_score

    predicted = np.empty(len(sources), dtype=object)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(features, sources, groups):
        predicted[test] = logistic_probe(seed).fit(features[train], sources[train]).predict(features[test])
    labels = sorted(set(sources))
    matrix = pd.crosstab(pd.Series(sources, name="true source"), pd.Series(predicted, name="predicted"))
    scores = {
        "accuracy": float((predicted == sources).mean()),
        "balanced accuracy": float(balanced_accuracy_score(sources, predicted)),
        "chance": 1 / len(labels),
    }
    return scores, matrix.reindex(index=labels, columns=labels, fill_value=0)


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


def occlude(images: np.ndarray, mask: np.ndarray, keep_inside: bool) -> np.ndarray:
    """Black out the masked region (``keep_inside=False``) or everything but it (``True``);
    images (N, S, S) uint8 and a boolean (S, S) mask."""
    hide = mask if not keep_inside else ~mask
    out = images.copy()
    out[:, hide] = 0
    return out


# --------------------------------------------------------------------------- verdict


@dataclass
class ModelEvidence:
    """What the probes measured of one trained model: AUC as is and with the lung field hidden,
    on test and (where there is one) on the external source."""

    name: str
    test_auc: float
    lungs_hidden_test_auc: float
    external_auc: float = float("nan")
    lungs_hidden_external_auc: float = float("nan")


VISIBLE, TRIVIAL = 0.5, 0.9  # balanced accuracy above which the source is clearly / trivially visible
KEPT = 0.5  # share of its discrimination above chance a model keeps with the lungs hidden: "uses a good deal outside"


def kept_share(hidden_auc: float, auc: float) -> float:
    """How much of a model's discrimination above chance (AUC - 0.5) it keeps with the lungs hidden."""
    return (hidden_auc - 0.5) / (auc - 0.5) if auc > 0.5 else float("nan")


# of the image: what an evenly spread saliency map puts in each region
LUNG_SHARE = float(saliency_maps.central_lung_mask(100).mean())
BORDER_SHARE = float(saliency_maps.border_mask(100).mean())


def verdict(
    source_balanced: float,
    chance: float,
    trivial_auc: float,
    untrained_auc: float,
    models: list[ModelEvidence],
    trivial_external_auc: float = float("nan"),
    saliency: dict[str, tuple[float, float]] | None = None,
) -> list[str]:
    """Plain sentences from the numbers, each with the threshold it uses, and a conclusion.
    ``saliency``: model name -> (share of Grad-CAM mass in the lung field, in the border band)."""
    if source_balanced >= TRIVIAL:
        how = "trivially visible in the pixels"
    elif source_balanced >= VISIBLE:
        how = "clearly visible in the pixels"
    else:
        how = "only partly visible in the pixels"
    lines = [
        f"From untrained features the source of an image is predicted with balanced accuracy "
        f"{source_balanced:.2f} (chance {chance:.2f}; thresholds {VISIBLE:.2f} for clearly and {TRIVIAL:.2f} "
        f"for trivially visible): the source is {how}."
    ]
    external = f" (external {trivial_external_auc:.2f})" if not np.isnan(trivial_external_auc) else ""
    lines.append(
        f"A logistic head trained on image statistics that carry no disease information reaches test AUC "
        f"{trivial_auc:.2f}{external}; on features of an untrained custom CNN, {untrained_auc:.2f}; the "
        "trained models reach " + ", ".join(f"{m.test_auc:.2f} ({m.name})" for m in models) + " on test."
    )
    explained = [m.name for m in models if trivial_auc >= m.test_auc - 0.05]
    if explained:
        lines.append(
            "On test, image statistics alone come within 0.05 of (or above) "
            + ", ".join(explained)
            + ": those test scores can be explained without the disease"
            + (" (not on the external source, where they fail)." if trivial_external_auc < 0.6 else ".")
        )
    outside = []
    for model in models:
        kept = kept_share(model.lungs_hidden_test_auc, model.test_auc)
        if np.isnan(kept):
            lines.append(
                f"{model.name} scores test AUC {model.test_auc:.2f}: no discrimination to lose with the lungs hidden."
            )
            continue
        line = (
            f"With the central lung field blacked out, {model.name} scores test AUC "
            f"{model.lungs_hidden_test_auc:.2f} instead of {model.test_auc:.2f}, keeping {kept:.0%} of its "
            "discrimination above chance"
        )
        if not np.isnan(model.lungs_hidden_external_auc):
            line += (
                f" (external: {model.lungs_hidden_external_auc:.2f} instead of {model.external_auc:.2f}, "
                f"{kept_share(model.lungs_hidden_external_auc, model.external_auc):.0%})"
            )
        uses_outside = kept >= KEPT
        outside += [model.name] if uses_outside else []
        lines.append(
            line
            + f"; threshold {KEPT:.0%}: "
            + (
                "it uses a good deal outside the lungs."
                if uses_outside
                else "on test, most of its discrimination needs the lung field."
            )
        )
    for name, (lung, border) in (saliency or {}).items():
        lines.append(
            f"Grad-CAM puts {lung:.0%} of {name}'s saliency in the central lung field and {border:.0%} in "
            f"the border band (an evenly spread map: {LUNG_SHARE:.0%} and {BORDER_SHARE:.0%})."
        )
    doubtful = bool(explained or outside) or untrained_auc >= min((m.test_auc for m in models), default=np.nan)
    lines.append(
        "These numbers do not show that the models detect COVID-19: much of what they score is available "
        "from disease-free image statistics, from features nobody trained for this task, or outside the lungs."
        if doubtful
        else "None of these probes explains the models' scores away, though none can prove they see the disease."
    )
    return lines
