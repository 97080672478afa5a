"""Lesson 06: the leak counting, clean test and minimum detectable difference written out on the page
(cells tagged scratch) equal the package's on planted copies, near-duplicates and patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import scratch_namespace

from cxr_utils.analysis import setups

NS = scratch_namespace("06_setups")
FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


def hashes(k: int) -> str:
    """A random 64-bit hash for picture k: different pictures lie about 32 bits apart."""
    return f"{int(np.random.default_rng(500 + k).integers(0, 2**63)):016x}"


def near(h: str, bits: int = 2) -> str:
    """The hash ``h`` with its lowest ``bits`` bits flipped (a near-duplicate: 2 x bits of 128 apart)."""
    return f"{int(h, 16) ^ ((1 << bits) - 1):016x}"


def image(path: str, patient: str, pixels: str, h: str, label: str = "NONCOVID") -> dict:
    return {
        "path": path,
        "image_id": path,
        "source": path.split("/")[0],
        "patient_id": patient,
        "pixel_sha256": pixels,
        "phash": h,
        "dhash": h,
        "sha256": f"file-{path}",
        "label": label,
    }


def chain() -> pd.DataFrame:
    """Six images with known leaks when a/1 and c/1 train: a/2 is a/1's patient, b/1 an exact copy of a/1,
    d/1 a near-duplicate of c/1, x/1 a near-duplicate of y/1 whose patient Y is in training only through
    y/2 (the chain), e/1 nothing."""
    h = {k: hashes(k) for k in range(8)}
    return pd.DataFrame(
        [
            image("a/1", "A", "p1", h[1]),
            image("a/2", "A", "p2", h[2]),
            image("b/1", "B", "p1", h[1]),  # exact copy of a/1 (same pixels), another patient
            image("c/1", "C", "p3", h[3]),
            image("d/1", "D", "p4", near(h[3])),  # near-duplicate of c/1
            image("x/1", "X", "p5", near(h[5])),  # near-duplicate of y/1 ...
            image("y/1", "Y", "p6", h[5]),
            image("y/2", "Y", "p7", h[6]),  # ... whose patient's other image trains
            image("e/1", "E", "p8", h[7]),
        ]
    )


def planted(n: int = 80, seed: int = 0) -> pd.DataFrame:
    """Pictures in one or two sources (copies, some only near), patients with one to three images."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        h, patient = hashes(100 + k), f"P{k // 2 if k % 3 else k}"  # every other pair shares a patient
        label = "COVID" if k % 2 else "NONCOVID"
        rows.append(image(f"a/{k}", patient, f"px{k}", h, label))
        if k % 4 == 0:
            rows.append(image(f"b/{k}", f"b{k}", f"px{k}", h, label))  # exact copy
        elif k % 4 == 1:
            rows.append(image(f"c/{k}", f"c{k}", f"py{k}", near(h, int(rng.integers(1, 4))), label))  # near
    return pd.DataFrame(rows)


def test_the_kinds_on_the_page_are_the_packages_on_known_cases():
    images = chain()
    joint = setups.joint_groups(setups.joint_images(images))
    test, train = pd.Series(["a/2", "b/1", "d/1", "x/1", "e/1"]), pd.Series(["a/1", "c/1", "y/2"])
    mine = NS["leak_kinds_scratch"](test, train, joint.copies, joint.groups)
    expected = ["patient", "copy", "copy", "patient", "no leak"]
    assert list(mine) == expected == list(setups.leak_kinds(test, train, joint))
    # a copy and a patient both in training: one leak, a copy
    both = NS["leak_kinds_scratch"](["b/1"], ["a/1", "a/2"], joint.copies, joint.groups)
    assert list(both) == ["copy"]
    # the chain is a leak only through the group: testing patient ids alone would call x/1 clean
    assert joint.patients["x/1"] not in set(joint.patients[train]) and mine.loc["x/1"] == "patient"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_counts_on_the_page_equal_leak_counts_on_random_splits(seed):
    images = planted(seed=seed)
    joint = setups.joint_groups(setups.joint_images(images))
    setup = images.assign(split=setups.random_split(images, FRACTIONS, seed))
    mine = NS["leak_counts_scratch"](setup, joint.copies, joint.groups)
    assert mine == setups.leak_counts(setup, joint)
    assert mine["copy"] > 0 and mine["patient"] > 0 and mine["no leak"] > 0  # every kind occurs
    assert mine["test"] == (setup["split"] == "test").sum()


def test_the_clean_test_on_the_page_is_the_packages():
    images = planted(seed=4)
    joint = setups.joint_groups(setups.joint_images(images))
    split = setups.random_split(images, FRACTIONS, 4)
    test_rows, train_paths = images[split == "test"], images.loc[split == "train", "path"]
    mine = NS["clean_test_scratch"](test_rows, train_paths, joint.groups)
    assert mine.equals(setups.clean_test(test_rows, train_paths, joint))
    assert 0 < len(mine) < len(test_rows)  # some test images leak, some do not
    assert not set(joint.groups[mine["path"]]) & set(joint.groups[train_paths])


@pytest.mark.parametrize("per_seed", [[0.03, -0.01, 0.05], [0.02, 0.02], [0.04]])
def test_the_minimum_detectable_difference_on_the_page_is_the_packages(per_seed):
    mine = NS["minimum_detectable_difference_scratch"](per_seed, 0.0009)
    assert mine == pytest.approx(setups.detectable_difference(per_seed, 0.0009)["minimum detectable difference"])
    lower_power = NS["minimum_detectable_difference_scratch"](per_seed, 0.0009, power=0.5)
    assert lower_power < mine  # a design detects smaller differences less often
