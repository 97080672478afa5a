"""The default merge of the real mirror (CXR_DATA_ROOT or ../shared/cxr-data)."""

from __future__ import annotations

import pandas as pd

from cxr_utils.data import manifest, sources

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def test_no_group_crosses_splits(mirror_build):
    manifest.check_no_group_crosses_splits(mirror_build.manifest)
    assert set(mirror_build.manifest["split"]) == {"train", "val", "test", "external"}


def test_every_cohen_row_kept_is_an_xray(mirror_build, mirror_root):
    meta = pd.read_csv(mirror_root / "cohen" / "metadata.csv", dtype=str, keep_default_na=False)
    modality = dict(zip("cohen/" + meta["folder"] + "/" + meta["filename"], meta["modality"]))
    kept = mirror_build.manifest.loc[mirror_build.manifest["source"] == "cohen", "path"]
    assert len(kept) > 300
    assert {modality[p] for p in kept} == {"X-ray"}


def test_counts_per_source_match_files_minus_exclusions(mirror_build, mirror_root):
    m, ex = mirror_build.manifest, mirror_build.exclusions
    for source in sources.SOURCES:
        on_disk = {
            p.relative_to(mirror_root).as_posix()
            for p in (mirror_root / source).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        }
        in_manifest = set(m.loc[m["source"] == source, "path"])
        mine = ex[ex["source"] == source]
        repeated_rows = set(mine.loc[mine["reason"] == "duplicate_metadata_row", "path"])
        excluded = set(mine.loc[mine["reason"] != "duplicate_metadata_row", "path"]) & on_disk
        assert in_manifest <= on_disk
        assert not in_manifest & excluded
        assert repeated_rows <= in_manifest | excluded  # its first row decides the file
        assert len(in_manifest) + len(excluded) == len(on_disk), source


def test_known_cross_source_copy_is_grouped(mirror_build):
    """The Radiography COVID folder re-uses Cohen images (a pair seen while calibrating)."""
    group = dict(zip(mirror_build.manifest["image_id"], mirror_build.manifest["group_id"]))
    cohen = next(i for i in group if i.startswith("cohen:auntminnie-b-2020_01_28_23_51_6665"))
    assert group[cohen] == group["radiography:COVID-155.png"]
    assert mirror_build.summary["cross_source_groups"] >= 50


def test_blank_and_todo_findings_are_excluded_not_guessed(mirror_build):
    ex = mirror_build.exclusions
    unknown = ex[ex["reason"] == "label_unknown"]
    assert {"figure1", "cohen", "actualmed"} <= set(unknown["source"])
    assert (unknown["source"] == "figure1").sum() == 15
