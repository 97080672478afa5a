"""Notebook 05's from-scratch lesson code (cells tagged ``scratch``) equals the package's tested
versions: occlusion with the mean of the visible pixels (``shortcuts.occlude``), scoring in
inference mode, Grad-CAM of the log-odds (``saliency.gradcam``) and its mass share inside a mask
(``saliency.mass_share``), on planted images and a tiny random CNN. Also: the rule exercise 1 states
for the equal-area control region (its solution cell, as the master notebook holds it) is the
package's ``shortcuts.random_regions``, so the exercise asks for what the run does."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import scratch_namespace

from cxr_utils import config
from cxr_utils.analysis import evaluation, saliency, shortcuts
from cxr_utils.modeling import models, training

SIZE, N = 32, 12  # image side and number of planted images


@pytest.fixture(scope="module")
def ns() -> dict:
    return scratch_namespace("05_shortcuts")


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images (N, S, S) uint8, half of them (label 1) with a bright square at a fixed place,
    the labels, and the square as a boolean (S, S) mask."""
    rng = np.random.default_rng(3)
    images = rng.integers(30, 150, (N, SIZE, SIZE)).astype(np.uint8)
    labels = np.arange(N) % 2
    square = np.zeros((SIZE, SIZE), dtype=bool)
    square[8:16, 10:18] = True
    images[labels == 1] = np.where(square, np.uint8(250), images[labels == 1])
    return images, labels, square


@pytest.fixture(scope="module")
def tiny_cnn():
    """The study's CNN at 32 px with random (seeded) weights: untrained, but a real network."""
    training.seed_everything(0)
    return models.build_custom_cnn(SIZE, 3)


def test_hide_equals_the_package(ns, planted):
    images, _, square = planted
    rng = np.random.default_rng(4)
    per_image = rng.random(images.shape) < 0.4
    per_image[0] = True  # nothing left visible: filled with 0
    per_image[1] = False  # nothing hidden
    for masks in (square, per_image, ~square):
        assert np.array_equal(ns["hide"](images, masks), shortcuts.occlude(images, masks))
    assert np.array_equal(ns["hide"](images, ~square), shortcuts.occlude(images, square, keep_inside=True))


def test_hide_fills_with_the_mean_of_the_visible_pixels(ns, planted):
    """The fill is the visible pixels' mean: the mean of the whole image would carry the bright
    square into the fill (the value a wrong version would give differs here)."""
    images, labels, square = planted
    hidden = ns["hide"](images, square)
    bright = images[labels == 1][0]
    visible_mean = np.round(bright[~square].mean())
    assert (hidden[labels == 1][0][square] == visible_mean).all()
    assert visible_mean != np.round(bright.mean())
    assert np.array_equal(hidden[:, ~square], images[:, ~square])  # the rest untouched
    assert hidden.dtype == images.dtype
    assert (ns["hide"](images, square, fill=0)[:, square] == 0).all()


def test_occlusion_removes_a_planted_cue(ns, planted):
    """A 'model' that reads only the square loses its signal when the square is hidden."""
    images, labels, square = planted
    reads_square = lambda x: x[:, square].mean(axis=1)  # noqa: E731
    assert evaluation.auc(labels, reads_square(images)) == 1.0
    assert evaluation.auc(labels, reads_square(ns["hide"](images, square))) < 0.9
    whole_mean = np.round(images.mean(axis=(1, 2)))  # a wrong fill: it keeps a trace of the square
    assert evaluation.auc(labels, reads_square(ns["hide"](images, square, fill=whole_mean))) == 1.0


def test_scores_and_auc_equal_the_package(ns, planted, tiny_cnn):
    images, labels, square = planted
    dataset = training.predict(tiny_cnn, saliency.model_images(tiny_cnn, images))
    assert np.allclose(ns["covid_scores"](tiny_cnn, images), dataset, atol=1e-6)
    as_is, hidden = ns["occlusion_auc"](tiny_cnn, images, labels, square)
    occluded = saliency.model_images(tiny_cnn, shortcuts.occlude(images, square))
    assert as_is == pytest.approx(evaluation.auc(labels, dataset))
    assert hidden == pytest.approx(evaluation.auc(labels, training.predict(tiny_cnn, occluded)))


def test_gradcam_equals_the_package(ns, planted, tiny_cnn):
    images, _, _ = planted
    ours = ns["gradcam_maps"](tiny_cnn, images, "conv4")
    package = saliency.gradcam(tiny_cnn, images.astype(np.float32))
    assert ours.shape == package.shape == images.shape
    assert np.nanmax(package) == pytest.approx(1.0)  # not all-zero maps: the comparison means something
    np.testing.assert_allclose(ours, package, atol=1e-5)
    # another layer gives other maps: the comparison can fail
    assert not np.allclose(ns["gradcam_maps"](tiny_cnn, images, "conv3"), package, atol=1e-3)
    assert np.allclose(ns["gradcam_maps"](tiny_cnn, images, "conv3"), saliency.gradcam(tiny_cnn, images, ("conv3",)))


def test_mass_share_equals_the_package(ns, planted):
    images, _, square = planted
    rng = np.random.default_rng(6)
    heat = rng.random((4, SIZE, SIZE))
    heat[1] = 0.0  # an all-zero map: NaN
    heat[2] = np.where(square, 1.0, 0.0)  # all of its mass inside the square
    shares = ns["share_inside"](heat, square)
    np.testing.assert_allclose(shares, saliency.mass_share(heat, square), equal_nan=True)
    assert np.isnan(shares[1]) and shares[2] == 1.0
    masks = rng.random((4, SIZE, SIZE)) < 0.5
    np.testing.assert_allclose(ns["share_inside"](heat, masks), saliency.mass_share(heat, masks), equal_nan=True)


def _exercise_solution(cell_id: str) -> dict:
    """Run one solution cell of the master notebook (by its cell id) in a fresh namespace."""
    import nbformat

    path = config.NOTEBOOKS_DIR / "05_shortcuts.ipynb"
    cell = next(c for c in nbformat.read(str(path), as_version=4).cells if c.get("id") == cell_id)
    namespace = {"np": np}
    exec(compile(cell.source, f"{path.name}[{cell_id}]", "exec"), namespace)
    return namespace


def test_exercise_1_rule_is_the_packages_random_regions():
    equal_area_region = _exercise_solution("l05-e1-answer1")["equal_area_region"]
    rng = np.random.default_rng(2)
    masks = rng.random((6, SIZE, SIZE)) < 0.03
    masks[:, 6:26, 4:14] = masks[:, 6:26, 18:28] = True  # two "lungs"
    masks[4, 1:31, 1:31] = True  # more lungs than outside: the region is all of the outside
    masks[5] = False  # no lungs: an empty region
    one_generator = np.random.default_rng(8)  # image after image, as the package draws
    ours = np.array([equal_area_region(k, one_generator) for k in masks])
    package = shortcuts.random_regions(masks, np.random.default_rng(8))
    assert np.array_equal(ours, package)
    assert [int(r.sum()) for r in ours] == [int(min(k.sum(), (~k).sum())) for k in masks]
    assert not (ours & masks).any()
    # another generator gives other regions: the comparison can fail
    assert not np.array_equal(ours, shortcuts.random_regions(masks, np.random.default_rng(9)))
