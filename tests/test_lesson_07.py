"""Lesson 07: the independent bootstrap written out on the page (``independent_difference``, tagged
scratch) equals the package's ``bootstrap_auc_difference`` draw for draw, and the paired bootstrap
(Exercise 1's solution, tagged scratch) equals ``paired_auc_difference``; the fixtures show what
pairing buys over independent resampling."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import scratch_namespace

from cxr_utils.analysis import evaluation


@pytest.fixture(scope="module")
def lesson():
    return scratch_namespace("07_report")


@pytest.fixture(scope="module")
def paired_difference(lesson):
    return lesson["paired_difference"]


@pytest.fixture(scope="module")
def independent_difference(lesson):
    return lesson["independent_difference"]


def scores(seed: int, n_groups: int = 40, noise: float = 0.8):
    """Labels, two models' scores on the same images and group ids (1-3 images per group)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), rng.integers(1, 4, n_groups))
    y = (rng.random(n_groups) < 0.5).astype(int)[groups]
    return y, y + rng.normal(0, noise, len(groups)), y + rng.normal(0, 1.5 * noise, len(groups)), groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_notebooks_paired_bootstrap_equals_the_package(paired_difference, seed):
    y, a, b, groups = scores(seed)
    mine = paired_difference((y, a, groups), (y, b, groups), n_boot=400, seed=seed)
    theirs = evaluation.paired_auc_difference((y, a, groups), (y, b, groups), n_boot=400, seed=seed)
    for key in ("value", "low", "high"):
        assert mine[key] == pytest.approx(theirs[key], abs=1e-12)


def test_sets_with_groups_of_their_own_match_the_package_too(paired_difference):
    """Group ids of any type, and groups only one set holds (a set with no image of a draw's
    groups scores NaN there, and the draw is left out)."""
    y, a, b, groups = scores(3)
    names = np.array([f"g{k:03d}" for k in groups])
    keep = groups >= 5  # the second set lacks the first five groups
    first, second = (y, a, names), (y[keep], b[keep], names[keep])
    mine = paired_difference(first, second, n_boot=300, seed=7)
    theirs = evaluation.paired_auc_difference(first, second, n_boot=300, seed=7)
    assert [mine[k] for k in ("value", "low", "high")] == pytest.approx([theirs[k] for k in ("value", "low", "high")])


def test_an_identical_pair_gives_zero_and_a_shared_gain_is_detected_only_when_paired(paired_difference):
    y, a, _, groups = scores(4)
    same = paired_difference((y, a, groups), (y, a, groups), n_boot=200, seed=0)
    assert (same["value"], same["low"], same["high"]) == (0, 0, 0)
    better = a + 0.3 * y  # the same scores, every COVID image nudged up: better in every draw
    paired = paired_difference((y, better, groups), (y, a, groups), n_boot=500, seed=4)
    independent = evaluation.bootstrap_auc_difference((y, better, groups), (y, a, groups), n_boot=500, seed=4)
    assert paired["low"] > 0 > independent["low"]  # would fail for a scratch version that resampled independently
    wide = evaluation.bootstrap_auc_difference((y, a, groups), (y, a, groups), n_boot=500, seed=0)
    assert wide["high"] - wide["low"] > 0.1  # Exercise 2: independent resampling of an identical pair


def test_the_interval_flips_sign_when_the_two_sets_swap(paired_difference):
    y, a, b, groups = scores(5, n_groups=30)
    ab = paired_difference((y, a, groups), (y, b, groups), n_boot=300, seed=5)
    ba = paired_difference((y, b, groups), (y, a, groups), n_boot=300, seed=5)
    assert ab["low"] == pytest.approx(-ba["high"], abs=1e-12) and ab["high"] == pytest.approx(-ba["low"], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_pages_independent_bootstrap_equals_the_package(independent_difference, seed):
    """Two AUCs on different images (a val and a test split, say): the same draws, the same numbers."""
    y1, a, _, g1 = scores(seed)
    y2, _, b, g2 = scores(seed + 10, n_groups=30)
    names = np.array([f"t{k:02d}" for k in g2])  # group ids of another type: strings
    mine = independent_difference((y1, a, g1), (y2, b, names), n_boot=400, seed=seed)
    theirs = evaluation.bootstrap_auc_difference((y1, a, g1), (y2, b, names), n_boot=400, seed=seed)
    for key in ("value", "low", "high"):
        assert mine[key] == pytest.approx(theirs[key], abs=1e-12)


def test_the_independent_bootstrap_drops_one_class_draws_and_is_not_the_paired_one(independent_difference):
    """A small set whose draws often hold one class (NaN AUC, left out) still matches the package; on an
    identical pair it gives a wide interval where pairing gives [0, 0] (so a scratch version that drew the
    groups once for both sets would fail here)."""
    y, a, b, groups = scores(6, n_groups=8)
    mine = independent_difference((y, a, groups), (y, b, groups), n_boot=300, seed=2)
    theirs = evaluation.bootstrap_auc_difference((y, a, groups), (y, b, groups), n_boot=300, seed=2)
    assert [mine[k] for k in ("value", "low", "high")] == pytest.approx([theirs[k] for k in ("value", "low", "high")])
    y, a, _, groups = scores(7)
    same = independent_difference((y, a, groups), (y, a, groups), n_boot=300, seed=0)
    assert same["value"] == 0 and same["high"] - same["low"] > 0.1
    assert evaluation.paired_auc_difference((y, a, groups), (y, a, groups), n_boot=300, seed=0)["high"] == 0
