"""Bootstrap intervals on known cases, group resampling, thresholds, bands, calibration."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, precision_score

from cxr_utils.analysis import evaluation


def cohort(n_groups: int = 200, seed: int = 0):
    """Labels alternating by group; groups of 1-3 images."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    y = (groups % 2).astype(int)
    return y, groups, rng


def test_perfect_scorer_has_degenerate_intervals_at_one():
    y, groups, _ = cohort()
    ci = evaluation.bootstrap_metrics(y, y * 0.9 + 0.05, groups, n_boot=300, seed=1)
    for metric in ("accuracy", "auc", "sensitivity", "specificity", "f1"):
        assert ci[metric]["value"] == ci[metric]["low"] == ci[metric]["high"] == 1.0


def test_random_scorer_interval_covers_a_half_and_is_not_degenerate():
    y, groups, rng = cohort()
    ci = evaluation.bootstrap_metrics(y, rng.random(len(y)), groups, n_boot=1000, seed=2)
    assert ci["auc"]["low"] < 0.5 < ci["auc"]["high"]
    assert 0.05 < ci["auc"]["high"] - ci["auc"]["low"] < 0.3
    assert ci["auc"]["n_valid"] == 1000


def test_intervals_are_seeded():
    y, groups, rng = cohort()
    scores = rng.random(len(y))
    a = evaluation.bootstrap_metrics(y, scores, groups, n_boot=200, seed=3)
    b = evaluation.bootstrap_metrics(y, scores, groups, n_boot=200, seed=3)
    c = evaluation.bootstrap_metrics(y, scores, groups, n_boot=200, seed=4)
    assert a == b and a != c


def test_group_resampling_keeps_groups_whole():
    groups = np.array(["a", "a", "a", "b", "c", "c"])
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = evaluation.group_resample(groups, rng)
        drawn = groups[idx]
        for name in np.unique(drawn):
            assert (drawn == name).sum() % (groups == name).sum() == 0
        assert len(set(np.unique(drawn))) <= 3


def test_grouped_intervals_are_wider_than_image_level_when_images_are_copies():
    y, groups, rng = cohort(60)
    scores = np.clip(y * 0.3 + rng.random(len(y)) * 0.7, 0, 1)
    copies = np.repeat(np.arange(len(y)), 5)  # every image five times, as near-duplicates would be
    grouped = evaluation.bootstrap_metrics(y[copies], scores[copies], groups[copies], n_boot=400, seed=5)
    naive = evaluation.bootstrap_metrics(y[copies], scores[copies], np.arange(len(copies)), n_boot=400, seed=5)
    width = lambda ci: ci["auc"]["high"] - ci["auc"]["low"]  # noqa: E731
    assert width(grouped) > 1.5 * width(naive)


def test_auc_undefined_with_one_class_is_reported_not_invented():
    y = np.ones(10, dtype=int)
    ci = evaluation.bootstrap_metrics(y, np.linspace(0, 1, 10), np.arange(10), n_boot=50)
    assert np.isnan(ci["auc"]["value"]) and ci["auc"]["n_valid"] == 0


def test_youden_threshold_separates_a_separable_set():
    y = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    t = evaluation.youden_threshold(y, scores)
    assert 0.3 < t <= 0.7
    assert evaluation.basic_metrics(y, scores, t)["accuracy"] == 1.0


def test_roc_and_pr_bands_contain_the_curve():
    y, groups, rng = cohort()
    scores = np.clip(y * 0.4 + rng.random(len(y)) * 0.6, 0, 1)
    grid, tpr, low, high = evaluation.roc_band(y, scores, groups, n_boot=200)
    assert grid.shape == tpr.shape == low.shape == high.shape
    assert np.mean((low <= tpr + 1e-9) & (tpr <= high + 1e-9)) > 0.9
    recall, precision, plow, phigh = evaluation.pr_band(y, scores, groups, n_boot=200)
    assert np.mean((plow <= precision + 1e-9) & (precision <= phigh + 1e-9)) > 0.8


def test_calibration_and_brier():
    y = np.array([0, 0, 1, 1])
    mean, rate, count, brier = evaluation.calibration(y, np.array([0.0, 0.0, 1.0, 1.0]), bins=2)
    assert brier == 0.0 and rate.tolist() == [0.0, 1.0] and count.tolist() == [2, 2]
    _, _, _, brier_half = evaluation.calibration(y, np.full(4, 0.5))
    assert brier_half == pytest.approx(0.25)


def test_several_thresholds_from_one_pass_equal_separate_bootstraps():
    y, groups, rng = cohort()
    scores = np.clip(y * 0.3 + rng.random(len(y)) * 0.7, 0, 1)
    both = evaluation.bootstrap_thresholds(y, scores, groups, {"half": 0.5, "val": 0.42}, n_boot=200, seed=6)
    assert both["half"] == evaluation.bootstrap_metrics(y, scores, groups, 0.5, n_boot=200, seed=6)
    assert both["val"] == evaluation.bootstrap_metrics(y, scores, groups, 0.42, n_boot=200, seed=6)
    assert both["half"]["sensitivity"] != both["val"]["sensitivity"]


def test_auc_alone_and_the_difference_of_two_aucs():
    rng = np.random.default_rng(7)
    y = np.tile([0, 1], 100)
    groups = np.arange(200) // 2
    perfect, noise = y.astype(float), rng.random(200)
    assert evaluation.bootstrap_auc(y, perfect, groups, n_boot=200) == {
        "value": 1.0,
        "low": 1.0,
        "high": 1.0,
        "n_valid": 200,
    }
    random_auc = evaluation.bootstrap_auc(y, noise, groups, n_boot=200)
    assert random_auc["low"] < 0.5 < random_auc["high"]
    assert random_auc["value"] == evaluation.bootstrap_metrics(y, noise, groups, n_boot=10)["auc"]["value"]
    assert np.isnan(evaluation.bootstrap_auc(np.ones(10), noise[:10], groups[:10], n_boot=10)["value"])
    gap = evaluation.bootstrap_auc_difference((y, perfect, groups), (y, noise, groups), n_boot=200)
    assert gap["value"] == pytest.approx(1 - random_auc["value"]) and gap["low"] > 0.3
    same = evaluation.bootstrap_auc_difference((y, noise, groups), (y, noise, groups + 1000), n_boot=200)
    assert same["value"] == 0 and same["low"] < 0 < same["high"]


def test_rank_auc_equals_scikit_learns_with_ties_and_is_nan_with_one_class():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    for n in (4, 37, 555):
        y = np.r_[0, 1, rng.integers(0, 2, n - 2)]
        s = np.round(rng.random(n), 1)  # many ties
        assert evaluation.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert evaluation.auc([1, 0, 1], [0.9, 0.1, 0.8]) == 1.0 and evaluation.auc([1, 0], [0.2, 0.7]) == 0.0
    assert np.isnan(evaluation.auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert evaluation.confusion([1, 1, 0, 0], [0.9, 0.2, 0.6, 0.1], 0.5).tolist() == [[1, 1], [1, 1]]


def test_predictive_values_and_brier_match_their_definitions():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.4, 0.7])
    metrics = evaluation.basic_metrics(y, scores, 0.5)
    # at 0.5: TP 3 (0.9, 0.8, 0.7), FN 1 (0.3), FP 1 (0.6), TN 3
    assert metrics["ppv"] == precision_score(y, scores >= 0.5) == 0.75
    assert metrics["npv"] == precision_score(1 - y, scores < 0.5) == 0.75
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, scores))
    nobody_positive = evaluation.basic_metrics(y, scores, 0.95)
    assert np.isnan(nobody_positive["ppv"]) and nobody_positive["npv"] == 0.5


def test_a_paired_difference_of_identical_scores_is_exactly_zero_and_an_unpaired_one_is_not():
    y, groups, rng = cohort()
    scores = rng.random(len(y)) + 0.3 * y
    paired = evaluation.paired_auc_difference((y, scores, groups), (y, scores, groups), n_boot=300, seed=1)
    assert paired["value"] == paired["low"] == paired["high"] == 0.0
    unpaired = evaluation.bootstrap_auc_difference((y, scores, groups), (y, scores, groups), n_boot=300, seed=1)
    assert unpaired["low"] < -0.02 and unpaired["high"] > 0.02


def test_a_paired_difference_covers_a_planted_gain_and_is_narrower_than_the_unpaired_one():
    y, groups, rng = cohort()
    noise = rng.random(len(y))
    weak, strong = noise + 0.2 * y, noise + 0.6 * y  # same images, the second model separates better
    paired = evaluation.paired_auc_difference((y, strong, groups), (y, weak, groups), n_boot=500, seed=2)
    unpaired = evaluation.bootstrap_auc_difference((y, strong, groups), (y, weak, groups), n_boot=500, seed=2)
    assert 0 < paired["low"] <= paired["value"] <= paired["high"]
    assert paired["high"] - paired["low"] < unpaired["high"] - unpaired["low"]
