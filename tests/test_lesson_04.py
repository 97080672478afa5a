"""Notebook 04's from-scratch lesson code (cells tagged ``scratch``) equals the package's tested
versions: the ROC curve and AUC, the group-bootstrap AUC interval, the val-chosen (Youden)
threshold and the paired AUC difference, on small planted fixtures."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import scratch_namespace
from sklearn.metrics import roc_auc_score

from cxr_utils.analysis import evaluation


@pytest.fixture(scope="module")
def ns() -> dict:
    return scratch_namespace("04_comparison")


def scored(seed: int, n: int = 40, decimals: int = 2, n_groups: int | None = None):
    """Labels with both classes, scores rounded so that ties occur, and string group ids
    (several images per group)."""
    rng = np.random.default_rng(seed)
    y = np.r_[1, 0, rng.integers(0, 2, n - 2)]
    scores = np.round(np.clip(0.4 + 0.2 * y + rng.normal(0, 0.25, n), 0, 1), decimals)
    groups = np.array([f"g{k:03d}" for k in rng.integers(0, n_groups or n // 2, n)])
    return y, scores, groups


def duplicated(copies: int = 5, n: int = 16, seed: int = 1):
    """``n`` distinct images, each present ``copies`` times (identical score), one group each."""
    base_y = np.arange(n) % 2
    base_s = np.clip(0.4 + 0.2 * base_y + np.random.default_rng(seed).normal(0, 0.2, n), 0, 1)
    groups = np.array([f"g{k:02d}" for k in np.repeat(np.arange(n), copies)])
    return np.repeat(base_y, copies), np.repeat(base_s, copies), groups


@pytest.mark.parametrize("seed", range(20))
def test_auc_by_pairs_and_roc_area_equal_sklearn_and_the_package(ns, seed):
    y, scores, _ = scored(seed, decimals=1)  # coarse scores: many ties
    expected = roc_auc_score(y, scores)
    assert ns["auc_by_pairs"](y, scores) == pytest.approx(expected, abs=1e-12)
    assert evaluation.auc(y, scores) == pytest.approx(expected, abs=1e-12)
    fpr, tpr, thresholds = ns["roc_points"](y, scores)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(thresholds) < 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-12)


def test_auc_by_pairs_counts_ties_as_one_half_and_is_nan_with_one_class(ns):
    assert ns["auc_by_pairs"]([1, 0], [0.5, 0.5]) == 0.5
    assert ns["auc_by_pairs"]([1, 1, 0], [0.9, 0.2, 0.5]) == 0.5
    assert np.isnan(ns["auc_by_pairs"]([1, 1], [0.2, 0.3]))


@pytest.mark.parametrize("seed", range(6))
def test_group_bootstrap_interval_equals_bootstrap_auc(ns, seed):
    y, scores, groups = scored(seed, n=30, n_groups=12)
    values = ns["bootstrap_aucs"](y, scores, groups, 300, seed)
    low, high = ns["percentile_interval"](values)
    package = evaluation.bootstrap_auc(y, scores, groups, n_boot=300, seed=seed)
    assert len(values) == package["n_valid"]
    assert (low, high) == pytest.approx((package["low"], package["high"]), abs=1e-12)
    # the draws are the package's own: group_members and one draw agree index for index
    members = ns["group_members"](groups)
    assert all(np.array_equal(a, b) for a, b in zip(members, evaluation.group_members(groups), strict=True))
    drawn = ns["draw"](members, np.random.default_rng(seed))
    assert np.array_equal(drawn, evaluation.group_resample(groups, np.random.default_rng(seed)))


def test_group_bootstrap_is_wider_than_an_image_bootstrap_on_duplicates(ns):
    """Five identical copies of each image: resampling the copies as if independent gives a
    much narrower interval than resampling the groups (a scratch bootstrap that ignored groups
    would fail here)."""
    y, scores, groups = duplicated()
    grouped = ns["percentile_interval"](ns["bootstrap_aucs"](y, scores, groups, 500, 3))
    images = ns["percentile_interval"](ns["bootstrap_aucs"](y, scores, np.arange(len(y)), 500, 3))
    assert grouped[1] - grouped[0] > 1.5 * (images[1] - images[0])


def test_bootstrap_leaves_out_draws_with_one_class(ns):
    y = np.array([1, 0, 0, 0, 0, 0])
    scores = np.linspace(0.9, 0.1, 6)
    values = ns["bootstrap_aucs"](y, scores, np.arange(6), 200, 0)
    package = evaluation.bootstrap_auc(y, scores, np.arange(6), n_boot=200, seed=0)
    assert 0 < len(values) == package["n_valid"] < 200 and not np.isnan(values).any()


@pytest.mark.parametrize("seed", range(40))
def test_youden_by_hand_equals_youden_threshold(ns, seed):
    y, scores, _ = scored(seed, n=int(np.random.default_rng(seed).integers(6, 60)), decimals=1 + seed % 3)
    assert ns["youden_by_hand"](y, scores) == evaluation.youden_threshold(y, scores)


def test_youden_picks_the_separating_threshold_and_caps_the_infinite_one(ns):
    y, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.6, 0.8])
    assert ns["youden_by_hand"](y, scores) == evaluation.youden_threshold(y, scores) == 0.6
    reversed_scores = 1 - scores  # no threshold beats calling nothing COVID
    assert ns["youden_by_hand"](y, reversed_scores) == evaluation.youden_threshold(y, reversed_scores) == 1.0


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.62])
def test_sensitivity_specificity_equal_basic_metrics(ns, threshold):
    y, scores, _ = scored(5)
    package = evaluation.basic_metrics(y, scores, threshold)
    sensitivity, specificity = ns["sensitivity_specificity"](y, scores, threshold)
    assert (sensitivity, specificity) == pytest.approx((package["sensitivity"], package["specificity"]))


@pytest.mark.parametrize("seed", range(4))
def test_paired_difference_equals_paired_auc_difference(ns, seed):
    y, scores, groups = scored(seed, n=30, n_groups=14)
    other = np.round(np.random.default_rng(seed + 100).random(len(y)), 2)
    mine = ns["paired_difference_by_hand"](y, scores, other, groups, 300, seed)
    package = evaluation.paired_auc_difference((y, scores, groups), (y, other, groups), n_boot=300, seed=seed)
    assert mine == pytest.approx((package["value"], package["low"], package["high"]), abs=1e-12)


def test_paired_difference_of_a_model_with_itself_is_exactly_zero(ns):
    """Scored on the same draw, identical models differ by 0 on every draw: [0, 0]."""
    y, scores, groups = scored(2)
    assert ns["paired_difference_by_hand"](y, scores, scores.copy(), groups, 200, 0) == (0.0, 0.0, 0.0)
