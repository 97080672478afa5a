"""The study's set-up vs ours on small known cases: planted duplicates and patients."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_utils.analysis import setups
from cxr_utils.data import manifest


def hashes(k: int) -> dict[str, str]:
    """Perceptual hashes of picture k: random 64-bit values, so different pictures lie ~32 bits apart."""
    rng = np.random.default_rng(1000 + k)
    return {"phash": f"{int(rng.integers(0, 2**63)):016x}", "dhash": f"{int(rng.integers(0, 2**63)):016x}"}


def planted(n_pairs: int = 60) -> pd.DataFrame:
    """Pictures 0..n-1 each in two sources (copies), pictures n..2n-1 once; labels alternate."""
    rows = []
    for k in range(2 * n_pairs):
        for copy in ("a", "b") if k < n_pairs else ("a",):
            rows.append(
                {
                    "path": f"{copy}/{k}.png",
                    "image_id": f"{copy}:{k}",
                    "source": copy,
                    "patient_id": f"{copy}:{k}",
                    "pixel_sha256": f"pixels{k}",
                    **hashes(k),
                    "sha256": f"file-{copy}{k}",
                    "label": "COVID" if k % 2 else "NONCOVID",
                }
            )
    return pd.DataFrame(rows)


FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


def test_a_random_split_puts_copies_on_both_sides_and_the_group_split_never_does():
    images = planted()
    joint = setups.joint_groups(setups.joint_images(images))
    random = images.assign(split=setups.random_split(images, FRACTIONS, seed=3))
    counts = setups.leak_counts(random, joint)
    assert counts["copy"] > 0 and counts["test"] == counts["copy"] + counts["patient"] + counts[setups.NO_LEAK]
    shares = random["split"].value_counts(normalize=True)
    assert all(abs(shares[name] - share) < 0.02 for name, share in FRACTIONS.items())
    grouped = images.assign(group_id=joint.groups[images["path"]].to_numpy())
    grouped = grouped.assign(split=manifest.split_groups(grouped, FRACTIONS, seed=3))
    assert setups.leak_counts(grouped, joint) == {**setups.leak_counts(grouped, joint), "copy": 0, "patient": 0}
    assert setups.random_split(images, FRACTIONS, seed=3).equals(random["split"])  # same seed, same split


def test_patients_are_told_apart_from_copies():
    images = planted(4)
    images.loc[images["path"] == "a/0.png", "patient_id"] = "a:shared"
    images.loc[images["path"] == "a/5.png", "patient_id"] = "a:shared"  # another image of that patient
    joint = setups.joint_groups(setups.joint_images(images))
    kinds = setups.leak_kinds(pd.Series(["b/0.png", "a/5.png", "a/6.png"]), pd.Series(["a/0.png"]), joint)
    assert kinds.tolist() == list(setups.LEAK_KINDS)


def test_the_clean_test_removes_exactly_the_images_whose_copy_or_patient_was_trained_on():
    images = planted(10)
    joint = setups.joint_groups(setups.joint_images(images))
    common_test = images[images["source"] == "b"]
    trained = pd.Series(["a/1.png", "a/2.png", "a/15.png"])
    clean = setups.clean_test(common_test, trained, joint)
    assert sorted(set(common_test["path"]) - set(clean["path"])) == ["b/1.png", "b/2.png"]
    assert len(clean) == len(common_test) - 2


def test_joint_images_keep_one_row_per_path():
    images = planted(5)
    twice = setups.joint_images(images, images.assign(label="NONCOVID"))
    assert len(twice) == len(images) and twice["path"].is_unique
    assert np.all(
        twice.columns == ["path", "image_id", "source", "patient_id", "pixel_sha256", "phash", "dhash", "sha256"]
    )
