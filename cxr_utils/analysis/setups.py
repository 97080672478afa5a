"""The study's set-up vs this project's: how much a random per-image split and the study's labels
inflate a model's numbers.

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

import numpy as np
import pandas as pd

from ..data.manifest import assign_groups, find_duplicate_pairs

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
