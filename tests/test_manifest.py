"""The merge on fixtures: bad files recorded, duplicates grouped, splits by group and seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr_utils import config
from cxr_utils.data import manifest, sources


@pytest.fixture
def build(fixture_root):
    return manifest.merge_sources(fixture_root, sources.SOURCES, progress=False)


def test_bad_files_go_to_exclusions_and_the_merge_continues(build):
    reasons = dict(zip(build.exclusions["path"], build.exclusions["reason"]))
    assert reasons["cohen/images/corrupt.jpg"] == "unreadable"
    assert reasons["cohen/images/truncated.jpg"] == "truncated"
    assert reasons["figure1/images/COVID-00004.jpg"] == "missing_file"
    assert reasons["actualmed/images/a4.png"] == "missing_file"
    assert reasons["cohen/images/orphan.png"] == "no_metadata"
    detail = build.exclusions.set_index("path").at["cohen/images/truncated.jpg", "detail"]
    assert "truncated" in detail.lower()
    file_level = build.exclusions[build.exclusions["reason"] != "duplicate_metadata_row"]
    assert not set(file_level["path"]) & set(build.manifest["path"])
    assert reasons["cohen/images/c6.png"] == "duplicate_metadata_row"  # its first row is kept
    assert "cohen/images/c6.png" in set(build.manifest["path"])


def test_manifest_columns_and_modes(build):
    m = build.manifest
    required = [
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
    ]
    assert list(m.columns[: len(required)]) == required
    modes = dict(zip(m["path"], m["mode"]))
    assert modes["figure1/images/COVID-00001.jpg"] == "L"
    assert modes["cohen/images/c1.jpg"] == "RGB"
    assert modes["cohen/images/c2.png"] == "P"
    assert modes["cohen/images/c6.png"].startswith("I")
    assert modes["actualmed/images/a1.png"] == "RGB"
    assert (m["width"] > 0).all() and m["image_id"].is_unique
    assert set(m["label"]) <= {"COVID", "NONCOVID"}


def test_cross_source_and_exact_duplicates_share_a_group(build):
    group = dict(zip(build.manifest["image_id"], build.manifest["group_id"]))
    # COVID-1 is a resized copy of cohen c1, COVID-2 an exact copy of COVID-1; c2 is c1's patient.
    assert group["radiography:COVID-1.png"] == group["cohen:c1.jpg"] == group["radiography:COVID-2.png"]
    assert group["cohen:c2.png"] == group["cohen:c1.jpg"]
    assert group["figure1:COVID-00003a.jpg"] == group["figure1:COVID-00003b.png"]
    assert group["radiography:COVID-3.png"] != group["radiography:COVID-4.png"]
    kinds = build.duplicate_pairs.groupby("kind").size().to_dict()
    assert kinds.get("exact", 0) >= 1 and kinds.get("near", 0) >= 2
    assert build.summary["cross_source_groups"] >= 1


def test_external_source_is_held_out_and_copies_of_internal_images_are_excluded(build):
    m = build.manifest
    assert set(m.loc[m["source"] == "actualmed", "split"]) == {"external"}
    assert set(m.loc[m["source"] != "actualmed", "split"]) <= {"train", "val", "test"}
    reasons = dict(zip(build.exclusions["path"], build.exclusions["reason"]))
    assert reasons["actualmed/images/a5.png"] == "duplicate_of_internal"


def test_no_group_crosses_splits_and_check_catches_a_leak(build):
    manifest.check_no_group_crosses_splits(build.manifest)
    leaky = build.manifest.copy()
    shared = leaky["group_id"] == leaky.loc[leaky["image_id"] == "cohen:c1.jpg", "group_id"].item()
    leaky.loc[shared.idxmax(), "split"] = "test" if leaky.loc[shared.idxmax(), "split"] != "test" else "train"
    with pytest.raises(AssertionError, match="cross splits"):
        manifest.check_no_group_crosses_splits(leaky)


def _synthetic(n_groups: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_groups)
    rows = []
    for g, size in enumerate(sizes):
        label = "COVID" if g % 3 == 0 else "NONCOVID"
        rows += [{"image_id": f"i{g}-{k}", "group_id": f"g{g}", "label": label} for k in range(size)]
    return pd.DataFrame(rows)


def test_split_is_seeded_stratified_and_near_its_fractions():
    images = _synthetic()
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    first = manifest.split_groups(images, fractions, seed=1)
    again = manifest.split_groups(images, fractions, seed=1)
    other = manifest.split_groups(images, fractions, seed=2)
    assert first.equals(again)
    assert not first.equals(other)
    assert (images.assign(split=first).groupby("group_id")["split"].nunique() == 1).all()
    for label, part in images.assign(split=first).groupby("label"):
        shares = part["split"].value_counts(normalize=True)
        for split, target in fractions.items():
            assert abs(shares[split] - target) < 0.03, (label, split, shares[split])


def test_bad_fractions_are_rejected():
    with pytest.raises(config.ConfigError, match="sum to 1"):
        manifest.check_fractions({"train": 0.8, "val": 0.15, "test": 0.15})
    with pytest.raises(config.ConfigError, match="train, val, test"):
        manifest.check_fractions({"train": 0.85, "val": 0.15})


def test_same_seed_same_manifest(fixture_root):
    a = manifest.merge_sources(fixture_root, sources.SOURCES, seed=5, progress=False)
    b = manifest.merge_sources(fixture_root, sources.SOURCES, seed=5, progress=False)
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    other = manifest.merge_sources(fixture_root, sources.SOURCES, seed=6, progress=False)
    assert not other.manifest["split"].equals(a.manifest["split"])  # the seed matters


def test_subset_per_source_is_capped(fixture_root):
    small = manifest.merge_sources(fixture_root, sources.SOURCES, max_images_per_source=2, progress=False)
    # at most 2 selected rows per source; bad files among them are excluded, not replaced
    assert (small.manifest.groupby("source").size() <= 2).all()


def test_write_outputs(build, tmp_path):
    written = manifest.write_outputs(build, tmp_path / "run")
    assert set(written) == {"manifest", "exclusions", "duplicate_pairs", "cross_source_groups"}
    back = pd.read_csv(written["manifest"])
    assert len(back) == len(build.manifest)
    cross = pd.read_csv(written["cross_source_groups"])
    assert (cross.groupby("group_id")["source"].nunique() > 1).all()
