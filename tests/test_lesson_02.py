"""Lesson 02's from-scratch code (the cells tagged ``scratch`` in notebooks/02_custom_cnn.ipynb) held
equal to the package's: the CNN (layer shapes, parameter counts, outputs with the same weights),
the tf.data pipeline and the augmentation, and the epoch-0 AUC in inference mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import pattern, scratch_namespace

from cxr_utils.data import datasets
from cxr_utils.modeling import experiment, models, training


@pytest.fixture(scope="module")
def ns() -> dict:
    return scratch_namespace("02_custom_cnn")


def layer_rows(model) -> list[tuple]:
    return [(type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params()) for layer in model.layers]


def split(x: np.ndarray, y: np.ndarray) -> datasets.SplitArrays:
    return datasets.SplitArrays(x, y.astype(np.float32), pd.DataFrame(), pd.DataFrame())


@pytest.mark.parametrize(
    ("size", "kernel", "extra", "channels"),
    [(64, 3, 0, 3), (38, 5, 1, 3), (150, 3, 0, 1), (64, 8, 2, 3), (40, 12, 0, 3), (256, 3, 0, 3)],
)
def test_the_scratch_cnn_has_the_package_layers_and_parameter_count(ns, size, kernel, extra, channels):
    mine = ns["build_cnn"](size, kernel, layers_to_add=extra, channels=channels)
    package = models.build_custom_cnn(size, kernel, layers_to_add=extra, channels=channels)
    assert layer_rows(mine) == layer_rows(package)
    assert mine.count_params() == package.count_params()
    if (size, kernel, extra, channels) == (256, 3, 0, 3):
        assert mine.count_params() == 17_019_073  # the study's figure


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")  # the study's runs 12-13, on purpose
def test_with_the_package_weights_the_scratch_cnn_gives_the_package_outputs(ns):
    x = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    for output in ("sigmoid", "softmax"):
        package = models.build_custom_cnn(32, 3, activation_output=output, layers_to_add=1)
        mine = ns["build_cnn"](32, 3, activation_output=output, layers_to_add=1)
        mine.set_weights(package.get_weights())
        expected = np.asarray(package(x, training=False))
        np.testing.assert_allclose(np.asarray(mine(x, training=False)), expected, rtol=1e-6, atol=1e-7)
    # the comparison can fail: other weights, or pixels the model would rescale twice, give other outputs
    package = models.build_custom_cnn(32, 3, layers_to_add=1)
    mine = ns["build_cnn"](32, 3, layers_to_add=1)
    expected = np.asarray(package(x, training=False))
    assert not np.allclose(np.asarray(mine(x, training=False)), expected, rtol=0, atol=1e-6)
    mine.set_weights(package.get_weights())
    assert not np.allclose(np.asarray(mine(x / 255, training=False)), expected, rtol=0, atol=1e-6)


def test_the_scratch_pipeline_gives_the_package_batches(ns):
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (10, 16, 16), dtype=np.uint8), np.array([0, 1] * 5, dtype=np.float32)
    for channels in (1, 3):
        mine = list(ns["make_batches"](x, y, 4, channels))
        package = list(datasets.make_dataset(split(x, y), batch_size=4, channels=channels))
        assert [len(b[0]) for b in mine] == [4, 4, 2]
        for (x_mine, y_mine), (x_package, y_package) in zip(mine, package, strict=True):
            np.testing.assert_array_equal(x_mine.numpy(), x_package.numpy())
            np.testing.assert_array_equal(y_mine.numpy(), y_package.numpy())
    # shuffled: every image once per epoch, in a new order each epoch
    shuffled = ns["make_batches"](x, y, 4, channels=1, shuffle_seed=7)
    first, second = (np.concatenate([b[0].numpy()[..., 0] for b in shuffled]) for _ in range(2))
    for epoch in (first, second):
        assert sorted(map(bytes, epoch.astype(np.uint8))) == sorted(map(bytes, x))
    assert not np.array_equal(first, second) and not np.array_equal(first, x)


def test_the_scratch_augmentation_moves_pixels_in_training_only(ns):
    batch = np.repeat(pattern(1, 32)[None, ..., None].astype("float32"), 3, axis=-1).repeat(4, axis=0)
    augment = ns["augmentation"](seed=3)
    out = np.asarray(augment(batch, training=True))
    assert out.shape == batch.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, batch) and not np.allclose(out[0], out[1])  # each image its own draw
    np.testing.assert_array_equal(np.asarray(augment(batch, training=False)), batch)
    # in a pipeline the augmentation touches the batches it is given, and only those
    y = np.ones(4, dtype=np.float32)
    plain = next(iter(ns["make_batches"](batch[..., 0].astype(np.uint8), y, 4)))[0].numpy()
    augmented = next(iter(ns["make_batches"](batch[..., 0].astype(np.uint8), y, 4, augment=augment)))[0].numpy()
    np.testing.assert_array_equal(plain, batch)
    assert not np.allclose(augmented, batch)


def test_auc_by_pairs_counts_ties_one_half_and_can_be_wrong(ns):
    y = np.array([1, 1, 0, 0, 1, 0])
    s = np.array([0.9, 0.5, 0.5, 0.1, 0.3, 0.3])
    # pairs won by COVID images: 0.9 beats 3; 0.5 beats 2 and ties 1; 0.3 beats 1 and ties 1 -> 7 of 9
    assert ns["auc_by_pairs"](y, s) == pytest.approx(7 / 9)
    assert ns["auc_by_pairs"](y, s) == pytest.approx(training.auc(y, s))
    assert ns["auc_by_pairs"](y, -s) == pytest.approx(1 - 7 / 9)  # the other ranking gives another number


def test_the_scratch_epoch0_auc_equals_the_package_on_a_small_model(ns):
    import keras
    from sklearn.metrics import roc_auc_score

    keras.utils.set_random_seed(0)
    x = np.stack([pattern(seed, 32) for seed in range(12)])
    x[::2] = np.clip(x[::2].astype(int) + 60, 0, 255).astype(np.uint8)  # a planted difference: COVID brighter
    y = np.tile([1.0, 0.0], 6).astype(np.float32)
    train, val = split(x[:6], y[:6]), split(x[6:], y[6:])
    data = experiment.TrainVal(train, val, Path("manifest.csv"))
    model = models.build_custom_cnn(32, 3)
    models.compile_model(model, "rmsprop", 1e-4, "binary_crossentropy")
    package, package_scores = experiment.inference_aucs(
        model, datasets.make_dataset(train, batch_size=4), datasets.make_dataset(val, batch_size=4), data
    )
    mine = ns["scores"](model, ns["make_batches"](val.x, val.y, 4))
    np.testing.assert_allclose(mine, package_scores, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(mine, ns["scores"](model, ns["make_batches"](val.x, val.y, 4)))  # dropout off
    by_hand = ns["auc_by_pairs"](val.y, mine)
    assert by_hand == pytest.approx(package["val_auc"], abs=1e-12)
    assert by_hand == pytest.approx(roc_auc_score(val.y, mine), abs=1e-12)
    # in training mode (dropout on) the scores are not the inference-mode ones
    noisy = np.concatenate(
        [np.asarray(model(b, training=True)).reshape(-1) for b, _ in ns["make_batches"](val.x, val.y, 4)]
    )
    assert not np.allclose(noisy, package_scores, rtol=0, atol=1e-7)


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")  # the study's runs 12-13, on purpose
@pytest.mark.filterwarnings("ignore:.*received `from_logits=True`")  # set-up D, on purpose
def test_the_degenerate_setups_move_the_weights_but_only_run14_moves_the_scores(ns):
    """The facts behind the notebook's Exercise 3 (Keras 3): binary cross-entropy takes the logit behind a
    softmax (runs 12-13), so the weights get run 9's gradient while the output stays exactly 1; categorical
    cross-entropy over one unit (run 14) is 0, yet its gradient with respect to the logit (softmax minus
    label, 1 - label) is not, so the weights and the sigmoid's scores move."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(2).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.tile([1.0, 0.0], 4).astype("float32")[:, None]
    weights = ns["build_cnn"](32, 3).get_weights()

    def one_step(output, loss_name):
        net = ns["build_cnn"](32, 3, activation_output=output)
        net.set_weights(weights)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.get(loss_name)(y, net(x, training=False)))
        gradients = tape.gradient(loss, net.trainable_weights)
        norm = float(np.sqrt(sum(np.sum(np.square(np.asarray(g, dtype=np.float64))) for g in gradients)))
        before = np.asarray(net(x, training=False))
        for w, g in zip(net.trainable_weights, gradients, strict=True):
            w.assign_sub(0.01 * g)
        return float(loss), norm, before, np.abs(np.asarray(net(x, training=False)) - before).max()

    a = one_step("sigmoid", "binary_crossentropy")
    b = one_step("softmax", "binary_crossentropy")
    c = one_step("sigmoid", "categorical_crossentropy")
    d = one_step("sigmoid", keras.losses.BinaryCrossentropy(from_logits=True))  # the sigmoid's output read as a logit
    assert a[1] > 0 and a[3] > 1e-6
    assert b[0] == pytest.approx(a[0], rel=1e-5) and b[1] == pytest.approx(a[1], rel=1e-4)  # the logit learns
    assert np.all(b[2] == 1.0) and b[3] == 0.0  # the output never moves
    assert c[0] == 0.0 and c[1] > 0 and c[3] > 1e-6  # a loss of 0 with a gradient
    # from_logits=True on a sigmoid's output: Keras 3 warns and takes the logit behind the sigmoid, so D is A
    assert d[0] == pytest.approx(a[0], rel=1e-5) and d[1] == pytest.approx(a[1], rel=1e-4) and d[3] > 1e-6
