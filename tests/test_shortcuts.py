"""Shortcut probes on small known cases: a planted shortcut is found, an absent one is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr_utils.analysis import evaluation, saliency, shortcuts


def toy_manifest(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Images of two sources; source "a" is 90 % COVID, "b" 10 %; splits over groups of two."""
    rng = np.random.default_rng(seed)
    source = np.where(np.arange(n) % 2 == 0, "a", "b")
    covid = rng.random(n) < np.where(source == "a", 0.9, 0.1)
    split = np.array(["train", "train", "train", "val", "test"])[(np.arange(n) // 2) % 5]
    return pd.DataFrame(
        {
            "image_id": [f"x:{k}" for k in range(n)],
            "source": source,
            "label": np.where(covid, "COVID", "NONCOVID"),
            "split": split,
            "group_id": [f"g{k // 2}" for k in range(n)],
        }
    )


def test_a_planted_source_marker_is_found_and_noise_is_not():
    m = toy_manifest()
    rng = np.random.default_rng(1)
    marker = np.c_[(m["source"] == "a").to_numpy(float) + rng.normal(0, 0.05, len(m)), rng.normal(size=len(m))]
    noise = rng.normal(size=(len(m), 2))
    planted = shortcuts.fit_and_score("marker", marker, m, splits=("test",))[0].auc(n_boot=200, seed=0)
    absent = shortcuts.fit_and_score("noise", noise, m, splits=("test",))[0].auc(n_boot=200, seed=0)
    assert planted["auc"] > 0.75 and planted["low"] > 0.6  # the label is visible through the source
    assert absent["low"] < 0.5 < absent["high"]


def test_source_probe_reads_the_source_when_it_is_visible():
    m = toy_manifest()
    rng = np.random.default_rng(2)
    visible = np.c_[(m["source"] == "a").to_numpy(float), rng.normal(size=len(m))]
    scores, matrix = shortcuts.source_probe(visible, m["source"].to_numpy(), m["group_id"].to_numpy())
    assert scores == {
        "accuracy": 1.0,
        "balanced accuracy": 1.0,
        "chance": 0.5,
        "recall a": 1.0,
        "recall b": 1.0,
    }
    assert matrix.loc["a", "a"] == (m["source"] == "a").sum()
    hidden, _ = shortcuts.source_probe(rng.normal(size=(len(m), 2)), m["source"].to_numpy(), m["group_id"].to_numpy())
    assert 0.3 < hidden["balanced accuracy"] < 0.7


def test_a_dominant_source_does_not_swamp_a_small_one():
    """With one source at 90 %, noise gives chance balanced accuracy; a weak sign of the small
    source is found by the class-balanced probe (an unweighted one would mostly guess the big one)."""
    sources = np.array(["big"] * 360 + ["small"] * 40)
    rng = np.random.default_rng(3)
    noise, _ = shortcuts.source_probe(rng.normal(size=(400, 2)), sources, np.arange(400))
    assert noise["balanced accuracy"] < 0.6
    weak = np.c_[rng.normal(size=400) + 1.5 * (sources == "small"), rng.normal(size=400)]
    found, matrix = shortcuts.source_probe(weak, sources, np.arange(400))
    assert found["recall small"] > 0.6 and found["balanced accuracy"] > 0.7
    assert matrix.loc["small"].sum() == 40


def same_label_manifest(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Two sources with both labels in each (a: 70 % COVID, b: 30 %)."""
    rng = np.random.default_rng(seed)
    source = np.where(np.arange(n) % 2 == 0, "a", "b")
    covid = rng.random(n) < np.where(source == "a", 0.7, 0.3)
    return pd.DataFrame(
        {
            "source": source,
            "label": np.where(covid, "COVID", "NONCOVID"),
            "group_id": [f"g{k}" for k in range(n)],
        }
    )


def test_same_label_probe_finds_a_planted_source_marker_and_nothing_without_it():
    m = same_label_manifest()
    rng = np.random.default_rng(6)
    is_a = (m["source"] == "a").to_numpy(float)
    marker = np.c_[is_a + rng.normal(0, 0.3, len(m)), rng.normal(size=len(m))]
    planted = shortcuts.same_label_probe(marker, m, "COVID", ["a"], n_boot=200)
    assert planted["auc"] > 0.9 and planted["low"] > 0.8 and planted["balanced accuracy"] > 0.8
    assert planted["first"] == "a" and planted["second"] == "b" and planted["note"] == ""
    assert planted["first images"] == ((m["label"] == "COVID") & (m["source"] == "a")).sum()
    # the label alone (the same in every source) tells nothing about the source within one label
    label_only = np.c_[(m["label"] == "COVID").to_numpy(float) + rng.normal(0, 0.3, len(m)), rng.normal(size=len(m))]
    absent = shortcuts.same_label_probe(label_only, m, "NONCOVID", ["a"], n_boot=200)
    assert absent["low"] < 0.5 < absent["high"]


def test_same_label_probe_leaves_out_copies_and_says_too_few():
    m = same_label_manifest(200)
    copied = m.index[(m["label"] == "COVID")][:6]  # three images copied from source b into a: one group each
    m.loc[copied, "group_id"] = [f"copy{k // 2}" for k in range(6)]
    m.loc[copied, "source"] = ["a", "b"] * 3
    features = np.random.default_rng(7).normal(size=(len(m), 2))
    row = shortcuts.same_label_probe(features, m, "COVID", ["a"], n_boot=50)
    assert row["groups left out"] == 3
    assert row["first images"] + row["second images"] == (m["label"] == "COVID").sum() - 6
    few = shortcuts.same_label_probe(features, m, "COVID", ["a"], others=["nowhere"], n_boot=50)
    assert few["note"] == "too few (< 10)" and np.isnan(few["auc"]) and few["second images"] == 0


def test_paired_difference_of_the_same_images():
    rng = np.random.default_rng(8)
    y = np.arange(100) % 2
    groups = np.arange(100) // 2
    scores = y + rng.normal(0, 0.8, 100)
    first = shortcuts.Scored("model", "test", y, scores, groups)
    same = shortcuts.paired_difference(first, shortcuts.Scored("copy", "test", y, scores, groups), 200, 0)
    assert same["difference"] == 0 and same["low"] == 0 and same["high"] == 0
    assert (same["first"], same["second"], same["split"], same["n"]) == ("model", "copy", "test", 100)
    worse = shortcuts.Scored("noisier", "test", y, scores + rng.normal(0, 3, 100), groups)
    row = shortcuts.paired_difference(first, worse, 200, 0)
    assert row["difference"] == pytest.approx(row["first auc"] - row["second auc"]) and row["low"] > 0
    few = shortcuts.paired_difference(first, shortcuts.Scored("few", "test", y[:12], scores[:12], groups[:12]), 50, 0)
    assert few["note"] == "too few (< 10)" and np.isnan(few["difference"])


def test_within_source_auc_says_too_few_below_ten_of_a_class():
    rng = np.random.default_rng(3)
    rows = [
        {"source": "big", "y": k % 2, "score": (k % 2) * 0.5 + rng.random() * 0.6, "group_id": f"g{k}"}
        for k in range(60)
    ]
    rows += [{"source": "small", "y": int(k == 0), "score": rng.random(), "group_id": f"h{k}"} for k in range(30)]
    table = evaluation.auc_by_source(pd.DataFrame(rows), n_boot=100, seed=0).set_index("source")
    assert table.loc["small", "note"] == "too few (< 10)" and np.isnan(table.loc["small", "auc"])
    assert (table.loc["small", "covid"], table.loc["small", "noncovid"]) == (1, 29)
    assert table.loc["big", "auc"] > 0.7 and table.loc["big", "note"] == ""


def test_leave_one_source_out_and_single_source_training():
    m = toy_manifest(400)
    rng = np.random.default_rng(4)
    y = (m["label"] == "COVID").to_numpy(float)
    disease = np.c_[y + rng.normal(0, 0.3, len(m))]  # the same signal in every source
    held = shortcuts.leave_one_source_out(disease, m, "b", n_boot=100)
    assert held["auc"] > 0.9 and held["train_sources"] == "a" and held["n"] == (m["source"] == "b").sum()
    big = toy_manifest(2000, seed=5)
    noise = np.random.default_rng(11).normal(0, 0.05, len(big))
    shortcut_only = np.c_[(big["source"] == "a").to_numpy(float) + noise]
    rows = shortcuts.single_source(shortcut_only, big, "a", n_boot=200)
    assert rows[0]["split"] == "b" and rows[0]["low"] < 0.5 < rows[0]["high"]  # nothing to learn within one source
    all_covid = m.assign(label=np.where(m["source"] == "a", "COVID", m["label"]))
    (one_class,) = shortcuts.single_source(disease, all_covid, "a", n_boot=10)
    assert one_class["note"] == "one class in training" and np.isnan(one_class["auc"])
    with pytest.raises(ValueError, match="probe 'x': .* single class"):
        shortcuts.fit_and_score("x", disease, m.assign(label="COVID"))


def test_image_statistics_see_markers_and_borders():
    plain = np.full((100, 100), 120, np.uint8)
    marked, framed = plain.copy(), plain.copy()
    marked[2:12, 2:12] = 255  # a burned-in marker in a corner
    framed[:5], framed[-5:], framed[:, :5], framed[:, -5:] = 0, 0, 0, 0
    base = shortcuts.image_statistics(plain)
    assert base["corner_white"] == 0 and base["border_black"] == 0 and base["std"] == 0
    assert shortcuts.image_statistics(marked)["corner_white"] == pytest.approx(100 / (4 * 16 * 16))
    assert shortcuts.image_statistics(framed)["border_black"] == pytest.approx(1.0)


def test_file_metadata_and_pixel_statistics(fixture_root):
    from cxr_utils.data import manifest

    rows = manifest.merge_sources(fixture_root, ["radiography", "cohen"], progress=False).manifest
    metadata = shortcuts.file_metadata(rows)
    assert list(metadata.index) == list(rows.index)
    assert {"width", "height", "aspect", "mode_L", "format_png", "format_jpg"} <= set(metadata.columns)
    assert (metadata["aspect"] == rows["width"] / rows["height"]).all()
    assert (metadata.filter(like="format_").sum(axis=1) == 1).all()  # every mirrored file is png or jpg
    images = np.stack([np.full((32, 32), 100, np.uint8), np.full((32, 32), 200, np.uint8)])
    pixels = shortcuts.pixel_statistics(images)
    assert pixels["mean"].tolist() == [100, 200] and "p50" in pixels and "corner_white" in pixels


def test_occlusion_fills_with_the_mean_of_what_stays_visible():
    images = np.full((2, 4, 4), 200, np.uint8)
    images[1, 1:3, 1:3] = 250  # a bright spot under the mask: the fill must not carry it
    images[1, 0, 0] = 100
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    hidden = shortcuts.occlude(images, mask, keep_inside=False)
    kept = shortcuts.occlude(images, mask, keep_inside=True)
    assert (hidden[0] == 200).all() and (hidden[1, mask] == round((100 + 11 * 200) / 12)).all()
    assert (hidden[:, ~mask] == images[:, ~mask]).all()
    assert (kept[0] == 200).all() and (kept[1, ~mask] == 250).all() and (kept[:, mask] == images[:, mask]).all()
    per_image = np.stack([mask, ~mask])  # one mask per image
    both = shortcuts.occlude(images, per_image)
    assert (both[0] == 200).all() and (both[1, ~mask] == 250).all() and both.dtype == np.uint8
    assert (images[1, 1:3, 1:3] == 250).all()  # the input is left alone
    with pytest.raises(ValueError, match="mask"):
        shortcuts.occlude(images, np.zeros((3, 3), bool))


def test_lung_masks_are_one_per_image():
    images = np.zeros((3, 20, 20), np.uint8)
    fixed = shortcuts.lung_masks(images)
    assert fixed.shape == (3, 20, 20) and (fixed == saliency.central_lung_mask(20)).all()
    own = shortcuts.lung_masks(images, segment=lambda x: np.arange(3)[:, None, None] > np.zeros((3, 20, 20)))
    assert not own[0].any() and own[1:].all()
    with pytest.raises(ValueError, match="one"):
        shortcuts.lung_masks(images, segment=lambda x: np.ones((20, 20), bool))


def test_random_regions_have_the_mask_area_and_lie_outside_it():
    masks = np.stack([saliency.central_lung_mask(40), np.zeros((40, 40), bool), np.ones((40, 40), bool)])
    masks[1, 5:15, 5:25] = True
    regions = shortcuts.random_regions(masks, np.random.default_rng(0))
    assert regions[0].sum() == masks[0].sum() and regions[1].sum() == 200
    assert not (regions & masks).any() and not regions[2].any()  # no outside: nothing to hide
    small = np.zeros((1, 40, 40), bool)
    small[0, 10:30, :] = True  # the outside (800 px) is smaller than the mask (800 px): all of it
    small[0, 30:31, :] = True
    assert (shortcuts.random_regions(small, np.random.default_rng(1))[0] == ~small[0]).all()
    again = shortcuts.random_regions(masks, np.random.default_rng(0))
    other = shortcuts.random_regions(masks, np.random.default_rng(2))
    assert (again == regions).all() and (other != regions).any()


def marked_images(n: int, rng: np.random.Generator, size: int = 24, side: int = 6):
    """Noise images; class 1 carries a bright marker in the top-left corner."""
    y = np.arange(n) % 2
    images = rng.integers(0, 128, (n, size, size)).astype(np.uint8)
    images[y == 1, :side, :side] = 230
    corner = np.zeros((size, size), bool)
    corner[:side, :side] = True
    return images, y, corner


def test_hiding_a_planted_corner_marker_matters_and_random_regions_do_not():
    """A model that uses a corner marker: hiding the corner takes its AUC to chance, hiding as much
    elsewhere (three random draws) leaves it, and the paired difference says so."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(9)
    train_x, train_y, _ = marked_images(300, rng)
    model = LogisticRegression(max_iter=3000).fit(train_x.reshape(len(train_x), -1) / 255, train_y)
    x, y, corner = marked_images(300, rng)
    groups = np.arange(len(y))
    scored = {}
    for condition, hidden in shortcuts.occlusion_conditions(np.broadcast_to(corner, x.shape), draws=3, seed=0):
        shown = x if hidden is None else shortcuts.occlude(x, hidden)
        scores = model.predict_proba(shown.reshape(len(shown), -1) / 255)[:, 1]
        scored[condition] = shortcuts.Scored(condition, "test", y, scores, groups)
    aucs = {c: s.auc(200, 0)["auc"] for c, s in scored.items()}
    assert list(aucs) == ["as is", "lungs hidden", "only lungs"] + [f"{shortcuts.OUTSIDE}, draw {k}" for k in (1, 2, 3)]
    assert aucs["as is"] > 0.99 and aucs["only lungs"] > 0.95  # the "lungs" here are the marker's corner
    assert aucs["lungs hidden"] < 0.65
    for k in (1, 2, 3):
        control = scored[f"{shortcuts.OUTSIDE}, draw {k}"]
        assert aucs[control.name] > 0.95
        assert shortcuts.paired_difference(control, scored["lungs hidden"], 200, 0)["low"] > 0.25
    assert shortcuts.kept_share(aucs["lungs hidden"], aucs["as is"]) < 0.3


# --------------------------------------------------------------------------- the verdict

CUSTOM, TRANSFER = "custom final_run02_seed1", "transfer final_xception_seed1"
TRAINED_CUSTOM, TRAINED_TRANSFER = "trained custom model (run02, seed 1)", "trained transfer model (xception, seed 1)"
UNTRAINED, FROZEN = "untrained custom CNN + logistic head", "frozen xception (ImageNet) + logistic head"


def auc_rows(rows, **fixed):
    return pd.DataFrame([{**fixed, **r} for r in rows])


def evidence(**changes) -> dict:
    """Tables shaped like the notebook's, with numbers like the default profile's."""
    tables = {
        "source_probe": pd.DataFrame(
            [
                {
                    "features": "frozen xception",
                    "accuracy": 0.70,
                    "balanced accuracy": 0.45,
                    "chance": 0.25,
                    "recall actualmed": 0.20,
                    "recall cohen": 0.60,
                    "recall figure1": 0.10,
                    "recall radiography": 0.90,
                }
            ]
        ),
        "same_label": auc_rows(
            [
                {"label": "COVID", "second": "cohen, figure1", "auc": 0.86, "low": 0.82, "high": 0.90},
                {"label": "NONCOVID", "second": "actualmed, cohen, figure1", "auc": 0.62, "low": 0.47, "high": 0.75},
            ],
            features="frozen xception",
            first="radiography",
            **{"first images": 120, "second images": 80, "groups left out": 4, "note": ""},
        ),
        "baselines": auc_rows(
            [
                {"probe": "image statistics: pixels the model sees", "split": "test", "auc": 0.80},
                {"probe": "image statistics: pixels the model sees", "split": "external", "auc": 0.46},
                {"probe": "image statistics: file metadata", "split": "test", "auc": 0.65},
                {"probe": "image statistics: file metadata", "split": "external", "auc": 0.50},
                {"probe": UNTRAINED, "split": "test", "auc": 0.865},
                {"probe": FROZEN, "split": "test", "auc": 0.913},
                {"probe": TRAINED_CUSTOM, "split": "test", "auc": 0.762},
                {"probe": TRAINED_TRANSFER, "split": "test", "auc": 0.931},
            ],
            low=0.0,
            high=1.0,
        ),
        "differences": pd.DataFrame(
            [
                [TRAINED_CUSTOM, UNTRAINED, "test", 0.762, 0.865, -0.103, -0.15, -0.06],
                [TRAINED_CUSTOM, UNTRAINED, "external", 0.934, 0.774, 0.160, 0.02, 0.30],
                [TRAINED_TRANSFER, FROZEN, "test", 0.931, 0.913, 0.018, 0.002, 0.035],
                [TRAINED_TRANSFER, TRAINED_CUSTOM, "test", 0.931, 0.762, 0.169, 0.12, 0.22],
            ],
            columns=["first", "second", "split", "first auc", "second auc", "difference", "low", "high"],
        ).assign(note=""),
        "cross_source": auc_rows(
            [
                {"probe": "without cohen", "split": "cohen", "auc": 0.605, "low": 0.53, "high": 0.68, "note": ""},
                {"probe": "without radiography", "split": "radiography", "auc": 0.643, "low": 0.62, "high": 0.66},
                {"probe": "trained on radiography only", "split": "actualmed", "auc": 0.681, "low": 0.48, "high": 0.84},
                {"probe": "trained on radiography only", "split": "figure1", "auc": np.nan, "note": "too few (< 10)"},
            ]
        ).fillna({"note": ""}),
        "within": auc_rows(
            [
                {"model": CUSTOM, "auc": 0.753, "low": 0.70, "high": 0.80},
                {"model": TRANSFER, "auc": 0.931, "low": 0.90, "high": 0.96},
            ],
            split="test",
            source="radiography",
            covid=143,
            noncovid=305,
            note="",
        ),
        "occlusion": auc_rows(
            [
                {"model": m, "condition": c, "auc": a}
                for m, conditions in (
                    (CUSTOM, [("as is", 0.762), ("lungs hidden", 0.685), ("only lungs", 0.71)]),
                    (TRANSFER, [("as is", 0.931), ("lungs hidden", 0.617), ("only lungs", 0.85)]),
                )
                for c, a in conditions
            ]
            + [
                {"model": m, "condition": f"{shortcuts.OUTSIDE}, draw {k}", "auc": a}
                for m, aucs in ((CUSTOM, (0.70, 0.69, 0.70)), (TRANSFER, (0.85, 0.86, 0.84)))
                for k, a in enumerate(aucs, 1)
            ],
            split="test",
        ),
        "occlusion_differences": auc_rows(
            [
                {"model": m, "first": f"{shortcuts.OUTSIDE}, draw {k}", "difference": d, "low": d - 0.04}
                for m, diffs in ((CUSTOM, (0.015, 0.005, 0.015)), (TRANSFER, (0.233, 0.243, 0.223)))
                for k, d in enumerate(diffs, 1)
            ],
            split="test",
            second="lungs hidden",
        ),
        "saliency": pd.DataFrame(
            [[CUSTOM, 0.86, 0.02, 0.455, 0.36], [TRANSFER, 0.40, 0.39, 0.455, 0.36]],
            columns=["model", "lung field share", "border share", "lung field area", "border area"],
        ),
    }
    return {**tables, **changes}


def test_the_verdict_cites_every_probe_and_states_its_thresholds():
    lines = shortcuts.verdict(**evidence())
    text = "\n".join(lines)
    assert lines[0].startswith("With class-balanced weights, a probe on frozen xception features names the source")
    assert (
        "balanced accuracy 0.45 (chance 0.25; recall actualmed 0.20, cohen 0.60, figure1 0.10, radiography 0.90)"
        in text
    )
    assert "the sources are only partly told apart" in lines[0]
    covid = next(line for line in lines if line.startswith("Within the COVID images alone"))
    assert "radiography (120) against cohen, figure1 (80; 4 groups copied across them left out)" in covid
    assert "AUC 0.86 [0.82, 0.90] from frozen xception features" in covid
    assert covid.endswith("the source is clearly visible with the label held fixed.")
    assert "Within the non-COVID images alone" in text and "no source difference is shown within this label" in text
    loso = next(line for line in lines if "out of source" in line)
    assert "frozen xception (ImageNet) features scores test AUC 0.91" in loso
    assert (
        "cohen (trained on the other sources) 0.60 [0.53, 0.68]" in loso
        and "figure1 (trained on radiography only): too few" in loso
    )
    assert "falls by more than 0.10 on cohen, radiography, actualmed" in loso
    assert "two collections there too" in text and "not a disease test inside one hospital" in text
    assert "file metadata that the networks never see" in text and "test AUC 0.65 (external 0.50)" in text
    custom = next(line for line in lines if line.startswith("Trained custom model (run02, seed 1) scores"))
    assert "difference -0.103 [-0.150, -0.060]" in custom and "external +0.160" in custom
    assert custom.endswith(f"{TRAINED_CUSTOM} is worse.")
    transfer = next(
        line
        for line in lines
        if line.startswith("Trained transfer model (xception, seed 1) scores test AUC 0.931, frozen")
    )
    assert transfer.endswith("trained transfer model (xception, seed 1) is better, by less than 0.05.")
    assert any(line.endswith("trained transfer model (xception, seed 1) is better.") for line in lines)
    custom_occlusion = next(
        line for line in lines if line.startswith("With the lung field") and "the custom model" in line
    )
    assert "keeping 71% of its discrimination" in custom_occlusion and "it keeps 73%-76%" in custom_occlusion
    assert "paired interval above 0 in 0 of 3 draws" in custom_occlusion
    assert custom_occlusion.endswith("and hiding them costs no more than hiding as much elsewhere.")
    transfer_occlusion = next(line for line in lines if line.startswith("With the lung field") and "transfer" in line)
    assert "in 3 of 3 draws" in transfer_occlusion
    assert transfer_occlusion.endswith(
        "most of its discrimination needs the lung field, more than an equal area elsewhere."
    )
    assert (
        "Grad-CAM puts 86% of the custom model's saliency in the lung field and 2% in the border band "
        "(an evenly spread map: 46% and 36%" in text
    )
    conclusion = lines[-1]
    assert conclusion.startswith("These numbers do not show that the models detect COVID-19: ")
    for reason in ("with the label held fixed", "loses more than 0.10", "untrained features", "equal area elsewhere"):
        assert reason in conclusion
    assert "hiding the lungs costs the custom model no more" in conclusion  # named: the transfer model's lungs matter
    assert "file metadata" not in conclusion  # 0.65 is not within 0.05 of a trained model
    assert "nan" not in text


def test_a_clean_verdict_and_tables_with_too_few_images():
    tables = evidence()
    clean = shortcuts.verdict(
        **{
            **tables,
            "same_label": tables["same_label"].assign(auc=0.52, low=0.45, high=0.60),
            "cross_source": tables["cross_source"].assign(auc=0.88, low=0.8, high=0.95).iloc[:2],
            "differences": tables["differences"].assign(difference=0.10, low=0.05, high=0.15),
            "occlusion_differences": tables["occlusion_differences"].assign(difference=0.2, low=0.1),
        }
    )
    assert (
        clean[-1]
        == "None of these probes explains the models' scores away, though none can prove they see the disease."
    )
    assert any("it falls by 0.10 or less wherever it was scored" in line for line in clean)
    few = tables["same_label"].assign(auc=np.nan, low=np.nan, high=np.nan, note="too few (< 10)")
    occluded = tables["occlusion"].assign(auc=np.nan)
    lines = shortcuts.verdict(
        **{**tables, "same_label": few, "occlusion": occluded, "saliency": tables["saliency"].iloc[:0]}
    )
    assert any(line.endswith("too few images for a probe (too few (< 10)).") for line in lines)
    assert "The custom model: too few test images of a class for occlusion AUCs." in lines
    assert not any("nan" in line for line in lines)
    metadata = tables["baselines"].assign(
        auc=lambda t: np.where(t["probe"].str.contains("file"), [0.93, 0.5][0], t["auc"])
    )
    matched = shortcuts.verdict(**{**tables, "baselines": metadata})
    assert any(
        "file metadata alone come within 0.05 of (or above) the custom model, the transfer model" in line
        for line in matched
    )
    assert "file metadata the networks never see match their test scores" in matched[-1]
    nothing = {
        name: table.assign(**{c: np.nan for c in ("auc", "low", "high", "difference") if c in table})
        for name, table in tables.items()
        if name not in ("source_probe", "saliency")
    }
    smoke = shortcuts.verdict(**{**tables, **nothing})
    assert smoke[-1].startswith("Too few images to read the same-label probes, the paired differences, the occlusion;")
    assert not any("nan" in line for line in smoke) and any("test AUC n/a (too few)" in line for line in smoke)
    disturbed = tables["occlusion"].assign(auc=lambda t: np.where(t["condition"] == "as is", t["auc"], 0.55))
    lines = shortcuts.verdict(**{**tables, "occlusion": disturbed})
    assert (
        sum(
            line.endswith("the drop shows that large occlusions disturb it, not that it needs the lungs.")
            for line in lines
        )
        == 1
    )
    assert shortcuts.kept_share(0.5, 0.9) == 0 and np.isnan(shortcuts.kept_share(0.6, 0.5))


def test_a_difference_is_essentially_the_same_only_when_its_interval_rules_out_a_large_one():
    rows = evidence()["differences"]
    for (low, high), expected in (
        ((-0.02, 0.03), "essentially the same (the interval rules out a difference of 0.05 or more)."),
        ((-0.02, 0.09), "no difference shown on these images."),
        ((0.006, 0.069), "trained transfer model (xception, seed 1) is better."),
    ):
        changed = rows.copy()
        changed.loc[2, ["difference", "low", "high"]] = [(low + high) / 2, low, high]
        line = next(s for s in shortcuts.difference_sentences(changed) if s.startswith("Trained transfer model"))
        assert line.endswith(expected), line


def test_the_conclusion_claims_little_training_gain_and_no_lung_effect_only_where_every_interval_says_so():
    tables = evidence()
    gain = tables["differences"].copy()
    gain.loc[0, ["difference", "low", "high"]] = [0.036, 0.006, 0.069]  # a small gain whose interval reaches 0.05
    lungs = tables["occlusion_differences"].copy()
    lungs.loc[lungs.index[0], ["difference", "low"]] = [0.05, 0.01]  # hiding the lungs cost more in one draw
    conclusion = shortcuts.verdict(**{**tables, "differences": gain, "occlusion_differences": lungs})[-1]
    assert "untrained features" not in conclusion and "equal area elsewhere" not in conclusion
    custom_occlusion = next(
        line for line in shortcuts.occlusion_sentences(tables["occlusion"], lungs) if "the custom model" in line
    )
    assert custom_occlusion.endswith("in 1 of 3 draws, so the lungs' own share is not settled.")
