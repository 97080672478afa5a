"""Notebook 01's from-scratch hashing, duplicate search, grouping and split (its cells tagged scratch)
agree with the package's tested versions on planted images and groups."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from conftest import build_fixture_root, save, scratch_namespace
from PIL import Image, ImageDraw

from cxr_utils.data import manifest, sources
from cxr_utils.data.images import hamming_matrix, inspect_image, load_gray8

FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


@pytest.fixture(scope="module")
def ns() -> dict:
    return scratch_namespace("01_data_merge")


def picture(seed: int, size: int) -> np.ndarray:
    """A dark square with six bright ellipses: a picture whose hashes are far from another seed's."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (size, size), int(rng.integers(20, 60)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        (x, y), (w, h) = rng.integers(0, size * 3 // 4, 2), rng.integers(size // 6, size // 2, 2)
        draw.ellipse([int(x), int(y), int(x + w), int(y + h)], fill=int(rng.integers(90, 250)))
    return np.asarray(img)


def jpeg_copy(gray: np.ndarray, size: int, quality: int = 75) -> np.ndarray:
    """A copy resized to size x size and saved as a JPEG, decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(gray).resize((size, size), Image.LANCZOS).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> pd.DataFrame:
    """Ten different pictures, two re-encoded copies, and patient ids that chain a copy to a third image."""
    folder = tmp_path_factory.mktemp("planted")
    arrays = {f"img{k}": picture(500 + k, size=160 + 8 * k) for k in range(10)}
    arrays["copy_of_img2"] = jpeg_copy(arrays["img2"], 224)
    arrays["copy_of_img5"] = jpeg_copy(arrays["img5"], 150, quality=60)
    patients = {name: f"p{name}" for name in arrays}
    patients["img7"] = patients["copy_of_img2"]  # a copy of img2 and img7 show one patient: img2, copy, img7 one group
    patients["img8"] = patients["img9"]  # one patient, two images
    rows = []
    for name, array in arrays.items():
        path = save(folder / f"{name}.png", array)
        info = inspect_image(path)
        rows.append({"image_id": name, "patient_id": patients[name], "path": path, **info.__dict__})
    return pd.DataFrame(rows)


def test_the_hashes_written_out_equal_the_packages(ns, planted):
    for path, ph, dh in zip(planted["path"], planted["phash"], planted["dhash"]):
        gray = load_gray8(path)
        assert ns["to_hex"](ns["phash"](gray)) == ph
        assert ns["to_hex"](ns["dhash"](gray)) == dh


def test_dhash_reads_brighter_than_the_left_neighbour(ns):
    rising = np.tile(np.linspace(0, 255, 90).astype(np.uint8), (80, 1))  # brighter to the right
    assert ns["to_hex"](ns["dhash"](rising)) == "f" * 16
    assert ns["to_hex"](ns["dhash"](rising[:, ::-1].copy())) == "0" * 16


def test_hamming_distance_counts_differing_bits(ns, planted):
    assert ns["hamming"]("0" * 16, "f" * 16) == 64
    assert ns["hamming"]("00000000000000ff", "0000000000000f0f") == 8
    hexes = planted["phash"].tolist()
    package = hamming_matrix(hexes)
    for i in range(len(hexes)):
        for j in range(len(hexes)):
            assert ns["hamming"](hexes[i], hexes[j]) == package[i, j]
    expected = hamming_matrix(hexes) + hamming_matrix(planted["dhash"].tolist())
    assert (ns["distance_matrix"](planted["phash"], planted["dhash"]) == expected).all()


@pytest.mark.parametrize("threshold", [0, 6, 20, 40])
def test_pairs_and_groups_equal_the_packages(ns, planted, threshold):
    pairs = ns["near_duplicate_pairs"](ns["distance_matrix"](planted["phash"], planted["dhash"]), threshold)
    package_pairs = manifest.find_duplicate_pairs(planted, threshold)
    assert pairs.to_numpy().tolist() == package_pairs[["i", "j", "distance"]].to_numpy().tolist()
    groups = ns["find_groups"](planted["patient_id"].tolist(), pairs)
    package_groups = manifest.assign_groups(planted, package_pairs)
    links = pd.DataFrame({"scratch": groups, "package": package_groups.to_numpy()}).drop_duplicates()
    assert len(links) == links["scratch"].nunique() == links["package"].nunique()


def test_the_planted_copies_and_the_chain_are_found(ns, planted):
    distance = ns["distance_matrix"](planted["phash"], planted["dhash"])
    pairs = ns["near_duplicate_pairs"](distance, 6)
    names = planted["image_id"].tolist()
    found = {(names[i], names[j]) for i, j in zip(pairs["i"], pairs["j"])}
    assert found == {("img2", "copy_of_img2"), ("img5", "copy_of_img5")}
    group = dict(zip(names, ns["find_groups"](planted["patient_id"].tolist(), pairs)))
    assert group["img2"] == group["copy_of_img2"] == group["img7"]  # transitive: copy, then patient
    assert group["img8"] == group["img9"] and group["img5"] == group["copy_of_img5"]
    assert len(set(group.values())) == 12 - 4


def planted_groups(seed: int, n_groups: int = 80) -> pd.DataFrame:
    """Images in groups of 1-5, each group of mixed or single labels, in shuffled order."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        share = rng.choice([0.0, 0.3, 0.5, 0.7, 1.0])
        for k in range(int(rng.integers(1, 6))):
            rows.append({"image_id": f"i{g:03d}_{k}", "group_id": f"g{g:03d}", "covid": rng.random() < share})
    table = pd.DataFrame(rows).sample(frac=1, random_state=seed).reset_index(drop=True)
    return table.assign(label=np.where(table["covid"], "COVID", "NONCOVID"))


@pytest.mark.parametrize("seed", [0, 1, 20201125])
@pytest.mark.parametrize("fractions", [FRACTIONS, {"train": 0.5, "val": 0.25, "test": 0.25}])
def test_the_split_written_out_equals_the_packages(ns, seed, fractions):
    images = planted_groups(seed)
    split = ns["split_by_group"](images["group_id"], images["label"], fractions, seed)
    assert split.tolist() == manifest.split_groups(images, fractions, seed).tolist()
    manifest.check_no_group_crosses_splits(images.assign(split=split))
    largest = images["group_id"].value_counts().max()
    for name, fraction in fractions.items():
        assert abs((split == name).sum() - fraction * len(images)) <= 2 * largest


def test_the_split_of_a_single_stratum_and_another_seed(ns):
    images = planted_groups(3).assign(label="NONCOVID")
    split = ns["split_by_group"](images["group_id"], images["label"], FRACTIONS, 5)
    assert split.tolist() == manifest.split_groups(images, FRACTIONS, 5).tolist()
    assert split.tolist() != ns["split_by_group"](images["group_id"], images["label"], FRACTIONS, 6).tolist()


def test_on_a_merged_fixture_root_everything_matches_the_manifest(ns, tmp_path):
    root = build_fixture_root(tmp_path / "cxr-data")
    m = manifest.merge_sources(root, sources.SOURCES, progress=False).manifest
    for path, ph, dh in zip(m["path"], m["phash"], m["dhash"]):
        gray = load_gray8(root / path)
        assert (ns["to_hex"](ns["phash"](gray)), ns["to_hex"](ns["dhash"](gray))) == (ph, dh)
    pairs = ns["near_duplicate_pairs"](ns["distance_matrix"](m["phash"], m["dhash"]), 6)
    assert len(pairs) >= 3  # Cohen's c1 and its two Radiography copies
    groups = ns["find_groups"](m["patient_id"].tolist(), pairs)
    links = pd.DataFrame({"scratch": groups, "manifest": m["group_id"]}).drop_duplicates()
    assert len(links) == links["scratch"].nunique() == links["manifest"].nunique()
    internal = m[m["split"] != "external"]
    split = ns["split_by_group"](internal["group_id"], internal["label"], FRACTIONS, 20201125)
    assert split.tolist() == internal["split"].tolist()
