"""Lesson 08: one prediction by hand (the notebook's cells tagged scratch: read, grey, resize,
scale, call in inference mode) equals ``cxr_utils.predict.predict`` on planted images, for a
sigmoid and a two-unit softmax model; a wrong resize or output column would not. Exercise 1's
solution (tagged scratch), the out-of-distribution score by hand, equals the package's
``OODReference.scores`` and its flag."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import pattern, save, scratch_namespace
from PIL import Image

from cxr_utils import predict
from cxr_utils.modeling import models
from cxr_utils.reporting.collect import RunKey

SIZE = 32


@pytest.fixture(scope="module")
def hand():
    return scratch_namespace("08_predict")


@pytest.fixture(scope="module")
def nets():
    """A float32 custom CNN (sigmoid) and a small spatially sensitive softmax model, seeded."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(8)
    cnn = models.build_custom_cnn(SIZE, 3)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.AveragePooling2D(4)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(0, 0.5))(x)
    return {"custom": cnn, "transfer": keras.Model(inputs, outputs)}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An 8-bit grey PNG, an RGB JPEG and a wide grey PNG (the resize squashes it, no crop)."""
    folder = tmp_path_factory.mktemp("images")
    wide = np.asarray(Image.fromarray(pattern(23, 96)).resize((96, 48), Image.BILINEAR))
    return [
        save(folder / "grey.png", pattern(21, 80)),
        save(folder / "colour.jpg", pattern(22, 64), mode="RGB", quality=95),
        save(folder / "wide.png", wide),
    ]


@pytest.fixture(scope="module")
def expected(nets, images, tmp_path_factory) -> dict:
    """The package's probability per (image path, model kind)."""
    wrapped = [
        predict.Model(RunKey(kind, "lesson"), {"effective": {"image_size": SIZE}}, net, 0.5)
        for kind, net in nets.items()
    ]
    table = predict.predict(images, wrapped, None, tmp_path_factory.mktemp("out"), saliency_maps=False)
    return {(row.path, row.model.split()[0]): row.probability for row in table.itertuples()}


def test_the_prediction_by_hand_equals_the_package(hand, nets, images, expected):
    for path in images:
        for kind, net in nets.items():
            assert hand["score_by_hand"](path, net) == pytest.approx(expected[(str(path), kind)], abs=1e-5)
    spread = [expected[(str(p), "transfer")] for p in images]
    assert max(spread) - min(spread) > 0.01  # the fixture tells images apart


def test_a_wrong_step_would_not_match(hand, nets, images, expected):
    """A centre crop instead of the squash, or the softmax's first column, scores differently:
    the equality above can fail."""
    wide, softmax = images[2], nets["transfer"]
    gray = hand["load_gray"](wide)
    h, w = gray.shape
    cropped = gray[:, (w - h) // 2 : (w + h) // 2]
    assert abs(hand["score_gray"](cropped, softmax) - expected[(str(wide), "transfer")]) > 1e-3
    x = np.asarray(Image.fromarray(gray).resize((SIZE, SIZE), Image.BILINEAR), np.float32)
    x = np.repeat(x[None, :, :, None], 3, axis=-1)
    first_column = float(np.asarray(softmax(x, training=False))[0, 0])
    assert abs(first_column - expected[(str(wide), "transfer")]) > 1e-3


def test_load_gray_matches_the_package_on_grey_and_rgb_files(hand, images):
    from cxr_utils.data.images import load_gray8

    for path in images:
        assert np.array_equal(hand["load_gray"](path), load_gray8(path))


def test_the_ood_score_by_hand_equals_the_package(hand):
    """Raw feature vectors of very different lengths (only their direction counts once L2-normalised),
    k = 5 and k = 2 neighbours, and the flag beyond the threshold."""
    rng = np.random.default_rng(8)
    train = rng.normal(size=(30, 16))
    reference = predict.OODReference("planted", None, 16, "float32", train / np.linalg.norm(train, axis=1)[:, None], 0)
    queries = rng.normal(size=(5, 16)) * np.array([0.01, 0.3, 1.0, 7.0, 100.0])[:, None]
    expected = reference.scores(queries)
    threshold = float(np.sort(expected)[1:3].mean())  # between two scores, equal to none
    for query, score in zip(queries, expected):
        mine, flagged = hand["ood_check"](query, reference.train, threshold)
        assert mine == pytest.approx(score, abs=1e-6) and flagged == (score > threshold)
    reference.neighbours = 2
    assert hand["ood_check"](queries[1], reference.train, 0.5, k=2)[0] == pytest.approx(
        reference.scores(queries[1:2])[0]
    )


def test_a_wrong_ood_rule_would_not_match(hand):
    """Skipping the normalisation of the image's features, or keeping the nearest training image only,
    gives another score: the equality above can fail."""
    rng = np.random.default_rng(9)
    train = rng.normal(size=(30, 16))
    unit = train / np.linalg.norm(train, axis=1)[:, None]
    query = 5 * rng.normal(size=16)
    score = predict.OODReference("planted", None, 16, "float32", unit, 0).scores(query[None])[0]
    unnormalised = np.sort(np.linalg.norm(unit - query, axis=1))[:5].mean()
    nearest_only = hand["ood_check"](query, unit, 0.0, k=1)[0]
    assert abs(unnormalised - score) > 0.1 and abs(nearest_only - score) > 1e-3
    assert hand["ood_check"](query, unit, 0.0)[0] == pytest.approx(score)
