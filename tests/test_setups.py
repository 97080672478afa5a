"""The study's set-up vs ours on small known cases: planted duplicates and patients."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_utils.analysis import evaluation, setups
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


# --- Paired statistics and the split-effect design ---------------------------------------------------------------


def scored_sample(rng: np.random.Generator, n_groups: int = 150):
    """Labels, groups of 1-3 images and two scores: ``a`` separates the classes better than ``b``."""
    sizes = rng.integers(1, 4, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes).astype(str)
    y = np.repeat(rng.random(n_groups) < 0.4, sizes).astype(int)
    a = y * 1.2 + rng.normal(size=len(y))
    b = y * 0.6 + rng.normal(size=len(y))
    return y, groups, a, b


def test_the_paired_bootstrap_gives_exactly_zero_for_identical_scores():
    y, groups, a, _ = scored_sample(np.random.default_rng(0))
    paired = setups.paired_mean_difference(y, groups, [(a, a.copy()), (a, a.copy())], n_boot=200, seed=1)
    assert paired["value"] == paired["low"] == paired["high"] == paired["variance"] == 0.0
    assert all(p["low"] == p["high"] == 0.0 for p in paired["pairs"])
    summary = setups.detectable_difference([p["value"] for p in paired["pairs"]], paired["variance"])
    assert summary["minimum detectable difference"] == summary["low"] == summary["high"] == 0.0
    # the unpaired bootstrap would give a wide interval around the same zero
    unpaired = evaluation.bootstrap_auc_difference((y, a, groups), (y, a, groups), n_boot=200, seed=1)
    assert unpaired["low"] < -0.03 and unpaired["high"] > 0.03


def test_each_pair_draws_as_the_evaluation_module_does_and_the_mean_covers_a_planted_difference():
    rng = np.random.default_rng(2)
    y, groups, a, b = scored_sample(rng)
    paired = setups.paired_mean_difference(y, groups, [(a, b)], n_boot=300, seed=5)
    single = evaluation.paired_auc_difference((y, a, groups), (y, b, groups), n_boot=300, seed=5)
    assert np.allclose(
        [paired["pairs"][0][k] for k in ("value", "low", "high")], [single[k] for k in single if k != "n_valid"]
    )
    # coverage: the population's AUC difference (a large sample) inside about 95 % of the sample intervals
    big_y, _, big_a, big_b = scored_sample(np.random.default_rng(99), n_groups=40_000)
    truth = evaluation.auc(big_y, big_a) - evaluation.auc(big_y, big_b)
    covered = []
    for k in range(60):
        y, groups, a, b = scored_sample(np.random.default_rng(100 + k))
        result = setups.paired_mean_difference(y, groups, [(a, b)], n_boot=200, seed=k)
        covered.append(result["low"] <= truth <= result["high"])
    assert 0.85 <= np.mean(covered) <= 1.0
    assert result["low"] > 0  # the planted difference (about 0.15) is found in a sample of this size


def test_the_minimum_detectable_difference_is_2_8_standard_errors_from_seeds_and_test_images():
    summary = setups.detectable_difference([0.02, 0.05, 0.08], bootstrap_variance=0.02**2)
    se = np.sqrt(np.var([0.02, 0.05, 0.08], ddof=1) / 3 + 0.02**2)
    assert np.isclose(summary["se"], se) and np.isclose(summary["mean"], 0.05)
    assert np.isclose(summary["minimum detectable difference"], 2.8016 * se, rtol=1e-4)
    assert np.isclose(summary["low"], 0.05 - 1.95996 * se, rtol=1e-4)
    assert np.isclose(setups.power_factor(), 2.8016, atol=1e-4)


def synthetic(n: int = 600, copies: int = 0, patients: int = 150, seed: int = 0):
    """Images with 8 features (3 carry the label), each its own group; ``patients`` of them get a second,
    independent image of the same label and patient (no information about the first beyond the label), and
    ``copies`` others an exact duplicate (the planted leak). Returns the frame, its joint groups and features."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    x = rng.normal(size=(n, 8))
    x[:, :3] += 0.5 * y[:, None]
    rows = [{"path": f"img{k}", "image_id": f"img{k}", "label": "COVID" if y[k] else "NONCOVID"} for k in range(n)]
    features = {f"img{k}": x[k] for k in range(n)}
    copy_of, group_of = {f"img{k}": f"img{k}" for k in range(n)}, {f"img{k}": f"img{k}" for k in range(n)}
    for k in range(patients):
        path = f"patient{k}"
        rows.append({"path": path, "image_id": path, "label": rows[k]["label"]})
        features[path] = rng.normal(size=8) + np.r_[0.5 * y[k] * np.ones(3), np.zeros(5)]
        copy_of[path], group_of[path] = path, f"img{k}"
    for j, k in enumerate(rng.choice(np.arange(patients, n), copies, replace=False)):
        path = f"copy{j}"
        rows.append({"path": path, "image_id": path, "label": rows[k]["label"]})
        features[path] = x[k] + rng.normal(scale=1e-3, size=8)
        copy_of[path], group_of[path] = f"img{k}", f"img{k}"
    frame = pd.DataFrame(rows)
    joint = setups.JointGroups(pd.Series(copy_of), pd.Series(group_of), pd.Series(group_of))
    return frame, joint, features


def nearest_neighbours(features):
    """A model that remembers its training images: 15 nearest neighbours, weighted by closeness."""
    from sklearn.neighbors import KNeighborsClassifier

    def fit_score(train, val, test, seed, side):
        model = KNeighborsClassifier(n_neighbors=15, weights="distance")
        model.fit(np.stack([features[p] for p in train["path"]]), (train["label"] == "COVID").to_numpy(int))
        return model.predict_proba(np.stack([features[p] for p in test["path"]]))[:, 1]

    return fit_score


def test_both_sides_of_a_seed_differ_only_in_the_leaking_images():
    frame, joint, _ = synthetic(copies=100)
    test, seeds = setups.split_effect_splits(frame, joint, FRACTIONS, seed=4, n_seeds=3, max_train=300)
    test_groups = set(joint.groups[test["path"]])
    assert len(seeds) == 3 and [s.seed for s in seeds] == [4, 5, 6]
    for split in seeds:
        for name in ("train", "val"):
            random, group = split.random[name], split.group[name]
            assert not set(random["path"]) & set(test["path"]) and not set(group["path"]) & set(test["path"])
            assert not group["path"].map(joint.groups).isin(test_groups).any()  # nothing leaks to the group side
            assert random["label"].value_counts().equals(group["label"].value_counts())  # same size and labels
            leaking = random[random["path"].map(joint.groups).isin(test_groups)]
            assert len(leaking) == split.removed[name] > 0
            assert set(random["path"]) - set(group["path"]) == set(leaking["path"])  # the only images it has extra
        assert len(split.random["train"]) <= 300
        assert split.leaked_test["copy"] > 0 and sum(split.leaked_test.values()) == len(test)
    again, _ = setups.split_effect_splits(frame, joint, FRACTIONS, seed=4, n_seeds=1)
    assert again["path"].tolist() == test["path"].tolist()  # one common test set, whatever the seeds


def test_the_split_effect_detects_a_planted_leak_at_its_minimum_detectable_difference():
    """Duplicates of images put where a random split carries them into training: the design finds the leak
    about as often as its stated minimum detectable difference (80 % power) says, and a control whose extra
    images carry no information (other images of the same patients) is found about 5 % of the time."""
    found, effects, stated = [], [], []
    for k in range(12):
        frame, joint, features = synthetic(copies=100, seed=200 + k)
        _, summary = setups.split_effect(frame, joint, nearest_neighbours(features), FRACTIONS, k, 3, n_boot=200)
        found.append(summary["low"] > 0)
        effects.append(summary["mean"])
        stated.append(summary["minimum detectable difference"])
    assert np.mean(effects) >= np.mean(stated)  # the planted leak is about the stated minimum (0.11 vs 0.09)
    assert np.mean(found) >= 0.75
    false_alarms = []
    for k in range(30):
        frame, joint, features = synthetic(copies=0, seed=300 + k)
        table, summary = setups.split_effect(frame, joint, nearest_neighbours(features), FRACTIONS, k, 3, n_boot=200)
        false_alarms.append(summary["low"] > 0 or summary["high"] < 0)
        assert (table["removed from training"] > 0).all()  # the sides differ: patients of test images
    assert np.mean(false_alarms) <= 0.1  # 5 % expected (2 of these 30); at most 3 allowed
