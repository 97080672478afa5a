"""Manifest: measure every image, group duplicates and patients, split without leakage.

A *group* joins images that must stay on the same side of every split: images of the same
patient, exact duplicates (same decoded pixels) and near-duplicates (perceptual hashes within
:data:`~cxr_utils.data.images.NEAR_DUPLICATE_THRESHOLD`), transitively. Splits are drawn over
groups, stratified by the group's label, with a seeded generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import ConfigError, below_minimum
from .images import NEAR_DUPLICATE_THRESHOLD, ImageReadError, hamming_matrix, inspect_image
from .sources import EXCLUSION_COLUMNS, apply_label_rules, orphan_files, read_sources, select_rows

MANIFEST_COLUMNS = [
    "image_id",
    "source",
    "path",
    "label",
    "finding",
    "view",
    "patient_id",
    "group_id",
    "split",
    "sha256",
    "width",
    "height",
    "mode",
    "pixel_sha256",
    "phash",
    "dhash",
    "label_rule",
]
SPLITS = ("train", "val", "test", "external")
DEFAULT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


@dataclass
class ManifestBuild:
    """Everything the data-merge step produces."""

    manifest: pd.DataFrame
    exclusions: pd.DataFrame
    duplicate_pairs: pd.DataFrame
    summary: dict = field(default_factory=dict)
    source_table: pd.DataFrame | None = None  # every metadata row as read, before selection


# --------------------------------------------------------------------------- measuring


def measure_images(table: pd.DataFrame, root: Path, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decode every image; return (rows with size/mode/hashes, exclusions for bad files)."""
    measured, bad = [], []
    rows = tqdm(table.to_dict("records"), desc="measuring images", disable=not progress, leave=False)
    for row in rows:
        try:
            info = inspect_image(Path(root) / row["path"])
        except ImageReadError as err:
            bad.append(
                {
                    "source": row["source"],
                    "path": row["path"],
                    "image_id": row["image_id"],
                    "reason": err.reason,
                    "detail": err.detail,
                }
            )
            continue
        measured.append({**row, **info.__dict__})
    return pd.DataFrame(measured), pd.DataFrame(bad, columns=EXCLUSION_COLUMNS)


# --------------------------------------------------------------------------- grouping


def find_duplicate_pairs(images: pd.DataFrame, threshold: int = NEAR_DUPLICATE_THRESHOLD) -> pd.DataFrame:
    """Pairs (i < j, positional) that are exact or near duplicates, with their distances."""
    columns = ["i", "j", "kind", "distance"]
    if len(images) < 2:
        return pd.DataFrame(columns=columns)
    distance = hamming_matrix(images["phash"].tolist()) + hamming_matrix(images["dhash"].tolist())
    same_pixels = images["pixel_sha256"].to_numpy()
    i, j = np.nonzero(np.triu(distance <= threshold, k=1) | np.triu(same_pixels[:, None] == same_pixels[None, :], k=1))
    exact = same_pixels[i] == same_pixels[j]
    return pd.DataFrame(
        {"i": i, "j": j, "kind": np.where(exact, "exact", "near"), "distance": distance[i, j]}, columns=columns
    )


def assign_groups(images: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """``group_id`` per image: the connected components of the graph whose edges join images of
    the same patient and duplicate pairs (SciPy's ``connected_components``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(images)
    same_patient = [
        (positions[0], k) for positions in images.groupby("patient_id").indices.values() for k in positions[1:]
    ]
    edges = np.array(same_patient + list(zip(pairs["i"].astype(int), pairs["j"].astype(int))), dtype=np.int64)
    edges = edges.reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    # Name groups by their first image id so that names do not depend on row order.
    first_id = pd.Series(images["image_id"].to_numpy()).groupby(component).transform("min")
    order = {name: k for k, name in enumerate(sorted(first_id.unique()))}
    return pd.Series([f"g{order[name]:05d}" for name in first_id], index=images.index)


# --------------------------------------------------------------------------- splitting


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """train/val/test fractions, positive, summing to 1."""
    if set(fractions) != set(DEFAULT_FRACTIONS):
        raise ConfigError(f"split fractions need exactly the keys train, val, test; got {sorted(fractions)}")
    if any(not 0 <= v <= 1 for v in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ConfigError(f"split fractions must be in [0, 1] and sum to 1; got {dict(fractions)}")
    return dict(fractions)


def check_merge_params(params: Mapping[str, Any]) -> list[str]:
    """Reject impossible data-merge values before the run (ConfigError naming key and value)."""
    from .sources import SOURCES

    problems = below_minimum(params, {"max_images_per_source": 1, "near_duplicate_threshold": 0})
    unknown = [s for s in params["sources"] + params["external_sources"] if s not in SOURCES]
    if unknown:
        problems.append(
            f"unknown source(s) {unknown} in keys 'sources'/'external_sources' (known: {', '.join(SOURCES)})"
        )
    try:
        check_fractions({s: params[f"{s}_fraction"] for s in DEFAULT_FRACTIONS})
    except ConfigError as err:
        problems.append(f"keys 'train_fraction', 'val_fraction', 'test_fraction': {err}")
    if problems:
        raise ConfigError("; ".join(problems))
    return []


def split_groups(images: pd.DataFrame, fractions: Mapping[str, float], seed: int) -> pd.Series:
    """Assign each group to train/val/test, stratified by the group's majority label.

    Within each label, groups are shuffled with ``seed`` and each goes to the split whose image
    count is furthest below its target, so large groups cannot push a split far off target.
    """
    fractions = check_fractions(fractions)
    rng = np.random.default_rng(seed)
    groups = images.groupby("group_id").agg(n=("image_id", "size"), covid=("label", lambda s: (s == "COVID").mean()))
    groups["stratum"] = np.where(groups["covid"] >= 0.5, "COVID", "NONCOVID")
    split_of: dict[str, str] = {}
    for _, stratum in groups.groupby("stratum"):
        names = stratum.index.to_numpy().copy()
        rng.shuffle(names)
        total = stratum["n"].sum()
        filled = dict.fromkeys(fractions, 0)
        for name in names:
            deficit = {s: fractions[s] * total - filled[s] for s in fractions}
            chosen = max(deficit, key=lambda s: (deficit[s], fractions[s]))
            split_of[name] = chosen
            filled[chosen] += stratum.at[name, "n"]
    return images["group_id"].map(split_of)


# --------------------------------------------------------------------------- building


def build_manifest(
    table: pd.DataFrame,
    root: Path,
    *,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = 20201125,
    external_sources: Iterable[str] = ("actualmed",),
    near_duplicate_threshold: int = NEAR_DUPLICATE_THRESHOLD,
    progress: bool = True,
) -> ManifestBuild:
    """From labelled, selected rows to a manifest with groups and splits.

    ``external_sources`` are held out whole as the ``external`` split; an external image that
    duplicates an internal one is excluded (reason ``duplicate_of_internal``) so the external
    test stays unseen.
    """
    external_sources = set(external_sources)
    images, bad_files = measure_images(table, root, progress=progress)
    if images.empty:
        raise ConfigError("no usable images: every selected row was excluded")
    images = images.reset_index(drop=True)
    pairs = find_duplicate_pairs(images, near_duplicate_threshold)
    images["group_id"] = assign_groups(images, pairs)
    named_pairs = name_pairs(images, pairs)

    is_external = images["source"].isin(external_sources)
    internal_groups = set(images.loc[~is_external, "group_id"])
    leaked = is_external & images["group_id"].isin(internal_groups)
    leak_exclusions = images.loc[leaked, ["source", "path", "image_id"]].assign(
        reason="duplicate_of_internal",
        detail="external image duplicates an image of a training source (group " + images.loc[leaked, "group_id"] + ")",
    )
    images = images.loc[~leaked].copy()
    is_external = images["source"].isin(external_sources)
    images["split"] = "external"
    internal = images.loc[~is_external]
    if not internal.empty:
        images.loc[~is_external, "split"] = split_groups(internal, fractions, seed)

    manifest = images[MANIFEST_COLUMNS].sort_values("image_id").reset_index(drop=True)
    exclusions = pd.concat([bad_files, leak_exclusions[EXCLUSION_COLUMNS]], ignore_index=True)
    return ManifestBuild(manifest, exclusions, named_pairs, summarise(manifest, named_pairs))


def name_pairs(images: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Duplicate pairs with the image ids, sources, paths and labels of both sides."""
    a = images.iloc[pairs["i"].to_numpy()].reset_index(drop=True)
    b = images.iloc[pairs["j"].to_numpy()].reset_index(drop=True)
    named = pd.DataFrame(
        {
            "group_id": a["group_id"],
            "kind": pairs["kind"].to_numpy(),
            "distance": pairs["distance"].to_numpy(),
        }
    )
    for side, frame in (("a", a), ("b", b)):
        for column in ("image_id", "source", "path", "label"):
            named[f"{column}_{side}"] = frame[column]
    named["cross_source"] = named["source_a"] != named["source_b"]
    return named


def summarise(manifest: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    """Counts that the notebook prints and ``result.json`` records."""
    per_group = manifest.groupby("group_id")
    sources_per_group = per_group["source"].nunique()
    labels_per_group = per_group["label"].nunique()
    return {
        "n_images": int(len(manifest)),
        "n_groups": int(per_group.ngroups),
        "largest_group": int(per_group.size().max()),
        "cross_source_groups": int((sources_per_group > 1).sum()),
        "label_conflict_groups": int((labels_per_group > 1).sum()),
        "duplicate_pairs": {kind: int(n) for kind, n in pairs["kind"].value_counts().items()},
        "cross_source_pairs": int(pairs["cross_source"].sum()),
        "n_per_split": {s: int(n) for s, n in manifest["split"].value_counts().items()},
    }


def check_no_group_crosses_splits(manifest: pd.DataFrame) -> None:
    """Raise if any group_id appears in more than one split (the leakage check)."""
    spread = manifest.groupby("group_id")["split"].nunique()
    crossing = spread[spread > 1]
    if not crossing.empty:
        raise AssertionError(f"{len(crossing)} groups cross splits, e.g. {list(crossing.index[:5])}")


def merge_sources(
    root: Path,
    sources: Iterable[str],
    *,
    label_mode: str = "default",
    xray_only: bool = True,
    views: str | list[str] = "frontal",
    max_images_per_source: int | None = None,
    seed: int = 20201125,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    external_sources: Iterable[str] = ("actualmed",),
    near_duplicate_threshold: int = NEAR_DUPLICATE_THRESHOLD,
    progress: bool = True,
) -> ManifestBuild:
    """Read, label, select, measure, group and split: the whole data-merge step.

    ``max_images_per_source`` keeps a seeded random subset of each source's selected rows
    (for smoke runs); the rows left out are not exclusions and are not listed.
    """
    sources = list(sources)
    table = read_sources(root, sources)
    labelled = apply_label_rules(table, label_mode)
    kept, dropped = select_rows(labelled, xray_only=xray_only, views=views)
    if max_images_per_source is not None:
        shuffled = kept.sample(frac=1.0, random_state=seed)
        kept = shuffled.groupby("source").head(max_images_per_source).sort_index().reset_index(drop=True)
    build = build_manifest(
        kept,
        root,
        fractions=fractions,
        seed=seed,
        external_sources=[s for s in external_sources if s in sources],
        near_duplicate_threshold=near_duplicate_threshold,
        progress=progress,
    )
    orphans = orphan_files(root, table, sources)
    build.exclusions = pd.concat([dropped, orphans, build.exclusions], ignore_index=True)
    build.summary["exclusions"] = {r: int(n) for r, n in build.exclusions["reason"].value_counts().items()}
    build.summary["label_mode"] = label_mode
    build.source_table = table
    return build


def write_outputs(build: ManifestBuild, folder: Path) -> dict[str, Path]:
    """Write manifest.csv, exclusions.csv, duplicate_pairs.csv and cross_source_groups.csv."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cross = build.manifest.groupby("group_id").filter(lambda g: g["source"].nunique() > 1)
    files = {
        "manifest": (folder / "manifest.csv", build.manifest),
        "exclusions": (folder / "exclusions.csv", build.exclusions),
        "duplicate_pairs": (folder / "duplicate_pairs.csv", build.duplicate_pairs),
        "cross_source_groups": (
            folder / "cross_source_groups.csv",
            cross[["group_id", "image_id", "source", "path", "label", "split"]],
        ),
    }
    for path, frame in files.values():
        frame.to_csv(path, index=False)
    return {name: path for name, (path, _) in files.items()}
