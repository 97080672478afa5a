"""The study's set-up vs this project's: how much a random per-image split and the study's labels
inflate a model's numbers.

The main measure, the split effect: the same model trained on a random per-image split and on that
split with every leaking image removed (copies and patients of test images), both scored on one
common test set with the same labels, over several seeds; paired differences (the bootstrap draws
the test groups once for both sides and every seed) and the smallest difference the design can
detect (:func:`split_effect`).

Four set-ups of the same data: {the study's labelling, this project's labelling} x {a random
per-image split that ignores patients and duplicates, this project's group split}. Each set-up's
model is scored on its own test split (what the study would have reported) and on one common
clean test set: this project's group-split test images, labelled by this project's rules, minus
every image whose copy or patient that set-up trained on.

Copies and patients are matched across the two labellings by a joint grouping of every image
either labelling uses (the same duplicate rule as the manifest: exact pixels or perceptual-hash
distance, plus patient ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from ..data.datasets import subset
from ..data.manifest import assign_groups, find_duplicate_pairs
from .evaluation import auc, group_members

SPLITS = ("train", "val", "test")
NO_LEAK = "no leak"  # a test image with neither a copy nor a same-patient image in training
LEAK_KINDS = ("copy", "patient", NO_LEAK)


def random_split(manifest: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.Series:
    """The study's kind of split: every image on its own, at random (stratified by label only),
    ignoring patients and duplicates."""
    rng = np.random.default_rng(seed)
    split = pd.Series("", index=manifest.index, dtype=object)
    for _, part in manifest.groupby("label"):
        order = rng.permutation(part.index.to_numpy())
        cuts = np.cumsum([round(fractions[s] * len(order)) for s in SPLITS[:-1]])
        for name, chunk in zip(SPLITS, np.split(order, cuts)):
            split[chunk] = name
    return split


def joint_images(*manifests: pd.DataFrame) -> pd.DataFrame:
    """Every image any of the manifests uses, once (by path), with its hashes and patient."""
    columns = ["path", "image_id", "source", "patient_id", "pixel_sha256", "phash", "dhash", "sha256"]
    return pd.concat([m[columns] for m in manifests]).drop_duplicates("path").reset_index(drop=True)


@dataclass
class JointGroups:
    """For each image path: its copy group (exact and near-duplicates only) and its group of
    copies and patients together."""

    copies: pd.Series  # path -> copy group
    groups: pd.Series  # path -> copy-or-patient group
    patients: pd.Series  # path -> patient id


def joint_groups(images: pd.DataFrame) -> JointGroups:
    """Group the joint images twice: by duplicates alone, and by duplicates and patients."""
    pairs = find_duplicate_pairs(images)
    alone = images.assign(patient_id=images["path"])  # one "patient" per image: copies only
    copies = assign_groups(alone, pairs)
    groups = assign_groups(images, pairs)
    index = images["path"]
    return JointGroups(
        pd.Series(copies.to_numpy(), index=index),
        pd.Series(groups.to_numpy(), index=index),
        pd.Series(images["patient_id"].to_numpy(), index=index),
    )


def leak_kinds(test_paths: pd.Series, train_paths: pd.Series, joint: JointGroups) -> pd.Series:
    """For each test image: 'copy' when an exact or near-duplicate of it is in training,
    'patient' when only another image of its patient is, 'no leak' otherwise."""
    copies_trained = set(joint.copies[train_paths])
    patients_trained = set(joint.patients[train_paths])
    groups_trained = set(joint.groups[train_paths])
    kinds = []
    for path in test_paths:
        if joint.copies[path] in copies_trained:
            kinds.append("copy")
        elif joint.patients[path] in patients_trained or joint.groups[path] in groups_trained:
            kinds.append("patient")
        else:
            kinds.append(NO_LEAK)
    return pd.Series(kinds, index=test_paths.index)


def clean_test(common_test: pd.DataFrame, train_paths: pd.Series, joint: JointGroups) -> pd.DataFrame:
    """The common test images whose copy or patient was not trained on (by this set-up)."""
    trained = set(joint.groups[train_paths])
    return common_test[~common_test["path"].map(joint.groups).isin(trained)]


def leak_counts(setup: pd.DataFrame, joint: JointGroups) -> dict[str, int]:
    """How many of a set-up's test images have a copy, or only a same-patient image, in its training split."""
    kinds = leak_kinds(setup.loc[setup["split"] == "test", "path"], setup.loc[setup["split"] == "train", "path"], joint)
    return {"test": int(len(kinds)), **{kind: int((kinds == kind).sum()) for kind in LEAK_KINDS}}


# --- The split effect: random vs group split, same labels, one common test set, several seeds ---------------------
#
# A random per-image split lets copies and patients of test images into training; the question is how much that
# raises the test AUC a set-up reports. Comparing each set-up's own test with a clean test confounds the leak with
# the labels and the make-up of the two test sets. Here both sides share everything but the leak:
#
# * one common test set T: a random per-image test split (this project's labels), drawn once with ``seed``;
# * per seed: a random per-image train/val split of the other images. The *random* side trains on it as it is, so
#   copies and patients of T's images are in its training (the leak). The *group* side trains on the same images
#   minus every image whose copy-or-patient group has an image in T (nothing leaks: T is clean for it). To keep the
#   two sides the same size and label mix, the random side drops as many other images of each label as the group
#   side lost; the two differ only in which images those are;
# * both sides are scored on T: the per-seed difference (random minus group) is paired, the same images, and the
#   bootstrap draws T's groups once for every seed and both sides.


@dataclass
class SeedSplit:
    """One seed of the split-effect design: both sides' training and val rows, and what leaks."""

    seed: int
    random: dict[str, pd.DataFrame]  # "train", "val": the random split, leaks included (size-matched)
    group: dict[str, pd.DataFrame]  # "train", "val": the same minus every image in a group of a test image
    removed: dict[str, int]  # per split: images the group side lost (and the random side dropped to match)
    leaked_test: dict[str, int]  # test images with a copy / only a patient in the random side's training


def _random_parts(frame: pd.DataFrame, shares: dict[str, float], rng: np.random.Generator) -> pd.Series:
    """Each row to one of ``shares``' parts at random, per image, stratified by label (the last part takes the rest)."""
    part = pd.Series("", index=frame.index, dtype=object)
    names = list(shares)
    for _, rows in frame.groupby("label"):
        order = rng.permutation(rows.index.to_numpy())
        cuts = np.cumsum([round(shares[n] * len(order)) for n in names[:-1]])
        for name, chunk in zip(names, np.split(order, np.minimum(cuts, len(order)))):
            part[chunk] = name
    return part


def matched_without_leaks(
    rows: pd.DataFrame, leaking: np.ndarray, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(random side, group side, images removed): the group side is ``rows`` without the ``leaking`` rows; the
    random side keeps them and drops as many other rows of each label instead (as far as there are), so both
    sides hold the same number of images of each label."""
    leaking = np.asarray(leaking, dtype=bool)
    dropped = []
    for label in rows.loc[leaking, "label"].unique():
        k = int((rows.loc[leaking, "label"] == label).sum())
        candidates = rows.index[~leaking & (rows["label"] == label).to_numpy()].to_numpy()
        dropped.extend(rng.choice(candidates, size=min(k, len(candidates)), replace=False).tolist())
    return rows.drop(index=dropped), rows[~leaking], int(leaking.sum())


def common_test(frame: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.DataFrame:
    """The split-effect design's common test set: a random per-image test split of ``frame``, drawn once."""
    return frame[random_split(frame, fractions, seed) == "test"]


def split_effect_splits(
    frame: pd.DataFrame,
    joint: JointGroups,
    fractions: dict[str, float],
    seed: int,
    n_seeds: int,
    max_train: int | None = None,
) -> tuple[pd.DataFrame, list[SeedSplit]]:
    """The common test set and, for seeds ``seed, seed + 1, ...``, both sides' training and val rows.

    ``max_train`` takes a class-balanced subset of each seed's training split before the leaking images are
    removed (the custom CNN trains on a subset), so both sides share that subset but for the leak."""
    test = common_test(frame, fractions, seed)
    rest = frame.drop(index=test.index)
    test_groups = set(joint.groups[test["path"]])
    total = fractions["train"] + fractions["val"]
    shares = {"train": fractions["train"] / total, "val": fractions["val"] / total}
    out = []
    for s in range(seed, seed + n_seeds):
        rng = np.random.default_rng(s)
        part = _random_parts(rest, shares, rng)
        chunks = {name: rest[part == name] for name in shares}
        chunks["train"] = subset(chunks["train"], max_train, s, balanced=True)
        random_side, group_side, removed = {}, {}, {}
        for name, rows in chunks.items():
            leaking = rows["path"].map(joint.groups).isin(test_groups).to_numpy()
            random_side[name], group_side[name], removed[name] = matched_without_leaks(rows, leaking, rng)
        kinds = leak_kinds(test["path"], random_side["train"]["path"], joint)
        out.append(SeedSplit(s, random_side, group_side, removed, {k: int((kinds == k).sum()) for k in LEAK_KINDS}))
    return test, out


def paired_mean_difference(
    y: np.ndarray,
    groups: np.ndarray,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """AUC of the first minus the second scores of every pair, all on the same images (``y``, ``groups``), and
    their mean over pairs, with paired percentile intervals: each resample draws the groups once and scores every
    pair on that one draw, so an identical pair gives [0, 0] and the mean's spread is that of one test set.

    Returns ``value``, ``low``, ``high`` and ``variance`` (the bootstrap variance) of the mean, and ``pairs``: the
    same for each pair."""
    y = np.asarray(y).astype(int)
    members = group_members(np.asarray(groups).astype(str))
    pairs = [(np.asarray(a, dtype=float), np.asarray(b, dtype=float)) for a, b in pairs]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        draws.append([auc(y[idx], a[idx]) - auc(y[idx], b[idx]) for a, b in pairs])
    draws = np.array(draws, dtype=float).reshape(n_boot, len(pairs))
    draws = draws[~np.isnan(draws).any(axis=1)]

    def summary(point: float, values: np.ndarray) -> dict:
        if not len(values):
            return {"value": point, "low": np.nan, "high": np.nan, "variance": np.nan}
        low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        return {"value": point, "low": float(low), "high": float(high), "variance": float(np.var(values, ddof=1))}

    points = [float(auc(y, a) - auc(y, b)) for a, b in pairs]
    return {
        **summary(float(np.mean(points)), draws.mean(axis=1)),
        "n_valid": int(len(draws)),
        "pairs": [summary(p, draws[:, k]) for k, p in enumerate(points)],
    }


def power_factor(alpha: float = 0.05, power: float = 0.8) -> float:
    """z(1 - alpha/2) + z(power): 1.960 + 0.842 = 2.80 for a two-sided test at 5 % with 80 % power."""
    z = NormalDist().inv_cdf
    return z(1 - alpha / 2) + z(power)


def detectable_difference(
    per_seed: list[float], bootstrap_variance: float, alpha: float = 0.05, power: float = 0.8
) -> dict[str, float]:
    """The mean of the per-seed differences, its standard error and normal interval, and the smallest true
    difference the design detects with probability ``power`` in a two-sided test at ``alpha``.

    Two sources of spread: the seeds (which images train and the initial weights: their variance over the
    seeds, divided by their number) and the test images (the paired bootstrap variance of the mean on the
    common test set, which every seed shares, so it does not shrink with more seeds). Standard error
    se = sqrt(seed variance / N + bootstrap variance); interval mean ± z(1 - alpha/2) se; minimum detectable
    difference (z(1 - alpha/2) + z(power)) se, 2.80 se at 5 % and 80 % (normal approximation: a true difference
    of that size gives an estimate above z(1 - alpha/2) se, so an interval above zero, 80 % of the time)."""
    values = np.asarray(per_seed, dtype=float)
    n = len(values)
    seed_variance = float(np.var(values, ddof=1)) if n > 1 else float("nan")
    se = float(np.sqrt((seed_variance if n > 1 else 0.0) / n + bootstrap_variance))
    z = NormalDist().inv_cdf(1 - alpha / 2)
    mean = float(values.mean())
    return {
        "mean": mean,
        "seeds": n,
        "seed sd": float(np.sqrt(seed_variance)) if n > 1 else float("nan"),
        "bootstrap sd": float(np.sqrt(bootstrap_variance)),
        "se": se,
        "low": mean - z * se,
        "high": mean + z * se,
        "minimum detectable difference": power_factor(alpha, power) * se,
    }


def split_effect(
    frame: pd.DataFrame,
    joint: JointGroups,
    fit_score,
    fractions: dict[str, float],
    seed: int,
    n_seeds: int,
    n_boot: int = 1000,
    max_train: int | None = None,
    alpha: float = 0.05,
) -> tuple[pd.DataFrame, dict]:
    """Run the split-effect design with one model: ``fit_score(train rows, val rows, test rows, seed, side)``
    trains on the rows and returns scores for the test rows (in their order).

    Returns the per-seed table (AUC of each side on the common test, the paired difference and its interval,
    the leaks) and the summary over seeds (:func:`detectable_difference`, with the paired bootstrap interval of
    the mean on the test images alone as ``bootstrap low/high``)."""
    test, seeds = split_effect_splits(frame, joint, fractions, seed, n_seeds, max_train)
    y = (test["label"] == "COVID").to_numpy(int)
    groups = test["path"].map(joint.groups).to_numpy()
    scores, rows = [], []
    for split in seeds:
        pair = tuple(
            np.asarray(fit_score(side["train"], side["val"], test, split.seed, name), dtype=float)
            for name, side in (("random", split.random), ("group", split.group))
        )
        scores.append(pair)
        rows.append(
            {
                "seed": split.seed,
                "train images": len(split.group["train"]),
                "removed from training": split.removed["train"],
                "test images": len(test),
                "leaked test images": split.leaked_test["copy"] + split.leaked_test["patient"],
                "leaked by a copy": split.leaked_test["copy"],
                "random split AUC": auc(y, pair[0]),
                "group split AUC": auc(y, pair[1]),
            }
        )
    paired = paired_mean_difference(y, groups, scores, n_boot, seed, alpha)
    table = pd.DataFrame(rows)
    table["difference"] = [p["value"] for p in paired["pairs"]]
    table["low"] = [p["low"] for p in paired["pairs"]]
    table["high"] = [p["high"] for p in paired["pairs"]]
    summary = detectable_difference(table["difference"].tolist(), paired["variance"], alpha)
    summary.update({"bootstrap low": paired["low"], "bootstrap high": paired["high"], "test images": len(test)})
    return table, summary
