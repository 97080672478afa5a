"""Notebook 03's from-scratch feature pass and head (its cells tagged scratch) agree with the package's
``features.extract`` and ``features.build_head`` / ``compile_head`` / ``feature_dataset`` on a tiny random
backbone and on planted feature vectors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import scratch_namespace

from cxr_utils.data.images import save_array
from cxr_utils.modeling import features, training

SIZE, WIDTH = 16, 6


@pytest.fixture(scope="module")
def ns() -> dict:
    return scratch_namespace("03_transfer_learning")


@pytest.fixture(scope="module")
def extractor():
    """A tiny random backbone, 0-255 in: rescaling -> conv -> BatchNorm with running statistics
    that are not the identity -> ReLU -> global average pooling (6 features)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(WIDTH, 3)(x)
    norm = keras.layers.BatchNormalization()
    x = keras.layers.ReLU()(norm(x))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    norm.moving_mean.assign(np.linspace(-0.2, 0.3, WIDTH).astype("float32"))
    norm.moving_variance.assign(np.linspace(0.05, 0.2, WIDTH).astype("float32"))
    return model


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, list[str]]:
    """Eight random grey images and made-up file hashes."""
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(8, SIZE, SIZE), dtype=np.uint8), [f"{k:02x}" * 32 for k in range(8)]


def test_features_equal_the_package(ns, extractor, images):
    x, hashes = images
    mine, computed = ns["extract_features"](extractor, x, hashes, {}, batch_size=3)
    package = features.extract(extractor, x, hashes, None, batch_size=4)
    assert computed == package.computed == 8
    assert mine.shape == (8, WIDTH) and mine.dtype == np.float32
    np.testing.assert_allclose(mine, package.features, atol=1e-6)


def test_inference_mode_matters_on_this_backbone(extractor, images):
    """A pass in training mode (BatchNorm on batch statistics) gives other vectors: the equality above
    would fail for a scratch pass that forgot inference mode."""
    x, hashes = images
    rgb = np.repeat(x[..., None], 3, axis=-1).astype(np.float32)
    package = features.extract(extractor, x, hashes, None).features
    assert not np.allclose(np.asarray(extractor(rgb, training=True)), package, atol=1e-3)


def test_cache_is_keyed_by_the_file_hash(ns, extractor, images, tmp_path):
    """Images already cached are not run again, in any order, and what is stored under a hash is
    what comes back (a stale vector planted under one hash is returned by both versions)."""
    x, hashes = images
    cache = {}
    folder = tmp_path / "features"
    assert ns["extract_features"](extractor, x[:5], hashes[:5], cache)[1] == 5
    assert features.extract(extractor, x[:5], hashes[:5], folder).computed == 5
    stale = np.full(WIDTH, 7.0, np.float32)
    cache[hashes[0]] = stale
    save_array(features.vector_path(folder, hashes[0]), stale)
    order = list(range(7, -1, -1))
    mine, computed = ns["extract_features"](extractor, x[order], [hashes[k] for k in order], cache)
    package = features.extract(extractor, x[order], [hashes[k] for k in order], folder)
    assert computed == package.computed == 3
    np.testing.assert_allclose(mine, package.features, atol=1e-6)
    planted_at = order.index(0)
    np.testing.assert_array_equal(mine[planted_at], stale)
    fresh = features.extract(extractor, x[order], [hashes[k] for k in order], None).features
    np.testing.assert_allclose(np.delete(mine, planted_at, axis=0), np.delete(fresh, planted_at, axis=0), atol=1e-6)


def planted(seed: int, n: int = 48, width: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Feature vectors (non-negative, like pooled ReLU outputs) whose two classes differ in two features."""
    rng = np.random.default_rng(seed)
    y = np.tile([0.0, 1.0], n // 2).astype(np.float32)
    x = np.abs(rng.normal(1.0, 0.5, size=(n, width))) + np.outer(y, [2.0, 0, -0.8, 0, 0, 0, 0][:width])
    return x.astype(np.float32), y


def test_head_has_the_package_architecture(ns):
    mine, package = ns["make_head"](7, seed=1), features.build_head(7)
    assert mine.output_shape == package.output_shape == (None, 2)
    assert mine.count_params() == package.count_params() == 16
    assert mine.layers[-1].get_config()["activation"] == package.layers[-1].get_config()["activation"] == "softmax"
    assert mine.layers[-1].dtype_policy.compute_dtype == "float32"


def package_epoch(start, x, y, batch_size, learning_rate, seed):
    """The package's head, from the given weights, after one epoch of Keras' fit on its dataset."""
    head = features.build_head(x.shape[1])
    head.set_weights(start)
    features.compile_head(head, learning_rate)
    head.fit(features.feature_dataset(x, y, batch_size, seed), epochs=1, shuffle=False, verbose=0)
    return head


def test_one_epoch_equals_the_package(ns):
    x, y = planted(2)
    mine = ns["make_head"](x.shape[1], seed=3)
    start = mine.get_weights()
    ns["train_head"](mine, x, y, 1, 8, 0.01, 5)
    package = package_epoch(start, x, y, 8, 0.01, 5)
    for a, b in zip(mine.get_weights(), package.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(ns["covid_scores"](mine, x), training.predict(package, x), atol=1e-5)
    other_order = package_epoch(start, x, y, 8, 0.01, 6)  # another shuffle seed: other batches, other weights
    assert not np.allclose(mine.get_weights()[0], other_order.get_weights()[0], atol=1e-5)


def test_head_learns_the_planted_classes(ns):
    x, y = planted(4)
    val_x, val_y = planted(5)
    head = ns["train_head"](ns["make_head"](x.shape[1], seed=1), x, y, 20, 24, 0.1, 2)
    assert training.auc(val_y, ns["covid_scores"](head, val_x)) > 0.95
    flipped = ns["train_head"](ns["make_head"](x.shape[1], seed=1), x, 1 - y, 20, 24, 0.1, 2)
    assert training.auc(val_y, ns["covid_scores"](flipped, val_x)) < 0.05  # the label columns matter
