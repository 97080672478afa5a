"""Shortcut probes on small known cases: a planted shortcut is found, an absent one is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr_utils.analysis import evaluation, shortcuts


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
    assert scores == {"accuracy": 1.0, "balanced accuracy": 1.0, "chance": 0.5}
    assert matrix.loc["a", "a"] == (m["source"] == "a").sum()
    hidden, _ = shortcuts.source_probe(rng.normal(size=(len(m), 2)), m["source"].to_numpy(), m["group_id"].to_numpy())
    assert 0.3 < hidden["balanced accuracy"] < 0.7


def test_a_dominant_source_does_not_pass_for_a_visible_one():
    """With one source at 90 %, guessing it scores 90 % accuracy but only chance balanced accuracy."""
    sources = np.array(["big"] * 180 + ["small"] * 20)
    noise = np.random.default_rng(3).normal(size=(200, 2))
    scores, _ = shortcuts.source_probe(noise, sources, np.arange(200))
    assert scores["accuracy"] >= 0.85 and scores["balanced accuracy"] < 0.6


def test_the_verdict_follows_the_numbers_and_states_its_thresholds():
    evidence = shortcuts.ModelEvidence("custom", 0.80, 0.74, external_auc=0.90, lungs_hidden_external_auc=0.88)
    fooled = shortcuts.verdict(
        0.95, 0.25, 0.81, 0.86, [evidence], trivial_external_auc=0.45, saliency={"custom": (0.86, 0.02)}
    )
    assert "trivially visible" in fooled[0]
    assert any("can be explained without the disease" in line for line in fooled)
    assert "(external 0.45)" in fooled[1] and "not on the external source, where they fail" in fooled[2]
    assert "keeping 80% of its discrimination" in fooled[-3] and "(external: 0.88 instead of 0.90, 95%)" in fooled[-3]
    assert "threshold 50%: it uses a good deal outside the lungs" in fooled[-3]
    assert fooled[-2] == (
        "Grad-CAM puts 86% of custom's saliency in the central lung field and 2% in the border band "
        "(an evenly spread map: 46% and 36%)."
    )
    assert fooled[-1].startswith("These numbers do not show that the models detect COVID-19")
    clean = shortcuts.verdict(0.30, 0.25, 0.55, 0.60, [shortcuts.ModelEvidence("custom", 0.90, 0.55)])
    assert "only partly visible" in clean[0] and "most of its discrimination needs the lung field" in clean[-2]
    assert clean[-1].startswith("None of these probes explains")
    assert shortcuts.kept_share(0.5, 0.9) == 0 and np.isnan(shortcuts.kept_share(0.6, 0.5))
    chance = shortcuts.verdict(0.30, 0.25, 0.55, 0.60, [shortcuts.ModelEvidence("custom", 0.48, 0.52)])
    assert chance[-2] == "custom scores test AUC 0.48: no discrimination to lose with the lungs hidden."
    assert not any("nan" in line for line in chance)


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


def test_trivial_features_record_unreadable_files(fixture_root):
    from cxr_utils.data import manifest

    build = manifest.merge_sources(fixture_root, ["radiography", "cohen"], progress=False)
    rows = build.manifest
    (fixture_root / rows.iloc[0]["path"]).unlink()
    table, failures = shortcuts.trivial_features(rows, fixture_root)
    assert len(table) == len(rows) - 1 and failures["reason"].tolist() == ["missing_file"]
    assert {"width", "aspect", "mode_L", "format_png", "p50"} <= set(table.columns)


def test_occlusion_blacks_out_the_mask_or_everything_else():
    images = np.full((2, 4, 4), 200, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    hidden = shortcuts.occlude(images, mask, keep_inside=False)
    kept = shortcuts.occlude(images, mask, keep_inside=True)
    assert (hidden[:, mask] == 0).all() and (hidden[:, ~mask] == 200).all()
    assert (kept[:, ~mask] == 0).all() and (kept[:, mask] == 200).all() and (images == 200).all()
