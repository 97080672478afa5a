"""The custom CNN: parameter count, parameter checks, image cache, tf.data pipeline, training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import pattern, save

from cxr_utils import config
from cxr_utils.data import datasets, images
from cxr_utils.modeling import models, training
from cxr_utils.reporting import study

NOTEBOOK = "02_custom_cnn"


def test_parameter_count_matches_the_study():
    assert models.build_custom_cnn(256, 3).count_params() == 17_019_073
    # two extra Conv2D(128) blocks (147,584 each) shrink the flattened map from 16x16 to 4x4
    convs = 896 + 18_496 + 73_856 + 147_584 + 2 * 147_584
    dense = (4 * 4 * 128) * 512 + 512 + 512 + 1
    assert models.build_custom_cnn(256, 3, layers_to_add=2).count_params() == convs + dense
    one_channel = models.build_custom_cnn(256, 3, channels=1).count_params()
    assert one_channel == 17_019_073 - 2 * 3 * 3 * 32


def base_params(**changes):
    spec = config.notebook_parameters(NOTEBOOK)
    return {**{name: p.default for name, p in spec.items()}, **changes}


def test_params_checker_flags_degenerate_runs_and_rejects_impossible_ones():
    assert models.check_custom_cnn_params(base_params()) == []
    softmax = models.check_custom_cnn_params(base_params(activation_output="softmax"))
    assert len(softmax) == 1 and "softmax over a single output unit" in softmax[0]
    categorical = models.check_custom_cnn_params(base_params(loss="categorical_crossentropy"))
    assert len(categorical) == 1 and "constantly 0" in categorical[0]
    with pytest.raises(config.ConfigError, match="key 'optimizer' = 'sgd' is not one of"):
        models.check_custom_cnn_params(base_params(optimizer="sgd"))
    with pytest.raises(config.ConfigError, match="key 'filter' = -3 must be >= 1"):
        models.check_custom_cnn_params(base_params(filter=-3))
    with pytest.raises(config.ConfigError, match="key 'learning_rate' = 0.0 must be > 0"):
        models.check_custom_cnn_params(base_params(learning_rate=0.0))
    with pytest.raises(config.ConfigError, match="too small for 6 pooling layers"):
        models.check_custom_cnn_params(base_params(image_size=32, layers_to_add=2))


def test_notebook_parameters_reject_unknown_keys_and_bad_types():
    spec = config.notebook_parameters(NOTEBOOK)
    with pytest.raises(config.ConfigError, match="unknown key 'lr'"):
        config.validate_parameters({"lr": 0.001}, spec, "run.yaml")
    with pytest.raises(config.ConfigError, match="key 'epochs' = 2.5 \\(float\\) is not int"):
        config.validate_parameters({"epochs": 2.5}, spec, "run.yaml")


def test_degenerate_set_ups_really_are_degenerate():
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    softmax = models.build_custom_cnn(32, 3, activation_output="softmax")
    assert np.allclose(softmax.predict(x, verbose=0), 1.0)
    sigmoid = models.build_custom_cnn(32, 3)
    y = np.array([[0], [1]] * 4, dtype="float32")
    loss = keras.losses.CategoricalCrossentropy()(y, sigmoid.predict(x, verbose=0))
    assert float(loss) == pytest.approx(0.0, abs=1e-6)


def test_run_files_are_the_studys_table_1():
    spec = config.notebook_parameters(NOTEBOOK)
    table = study.table1().set_index("run")
    files = sorted((config.PROJECT_ROOT / "params" / "custom").glob("run*.yaml"))
    assert [f.stem for f in files] == [f"run{n:02d}" for n in range(1, 15)]
    for path in files:
        params = config.load_params_file(path)
        config.validate_parameters(params, spec, str(path))
        row = table.loc[params["study_run"]]
        assert path.stem == f"run{params['study_run']:02d}"
        for key in ("image_size", "filter", "batch_size", "activation_output", "epochs", "learning_rate"):
            assert params[key] == row[key], (path.name, key)
        assert params["optimizer"].lower() == row["optimizer"].lower()
    layers = {f.stem: config.load_params_file(f)["layers_to_add"] for f in files}
    assert {k for k, v in layers.items() if v == 2} == {"run11", "run12"}
    assert config.load_params_file(files[13])["loss"] == "categorical_crossentropy"


def test_cache_returns_the_direct_decode_and_is_reused(tmp_path):
    source = save(tmp_path / "img.png", pattern(5, 300), mode="RGBA")
    sha = images.file_sha256(source)
    cache = tmp_path / "cache"
    first = images.load_resized(source, sha, 64, cache)
    direct = images.resize_gray8(images.load_gray8(source), 64)
    assert first.dtype == np.uint8 and first.shape == (64, 64)
    assert np.array_equal(first, direct)
    cached = images.cache_path(cache, sha, 64)
    assert cached.is_file()
    source.unlink()  # the second read must come from the cache
    assert np.array_equal(images.load_resized(source, sha, 64, cache), direct)
    with pytest.raises(images.ImageReadError):
        images.load_resized(source, sha, 32, cache)  # another size is another key


def make_manifest(root, n_per_label=6):
    rows = []
    for k in range(2 * n_per_label):
        label = "COVID" if k % 2 else "NONCOVID"
        path = save(root / "imgs" / f"{k}.png", pattern(40 + k, 48))
        rows.append(
            {
                "image_id": f"x:{k}",
                "path": f"imgs/{k}.png",
                "label": label,
                "split": "train" if k < 8 else "val",
                "sha256": images.file_sha256(path),
            }
        )
    return pd.DataFrame(rows)


def test_subsets_are_seeded_and_balanced_or_proportional():
    rows = pd.DataFrame({"image_id": [f"i{k}" for k in range(100)], "label": ["COVID"] * 20 + ["NONCOVID"] * 80})
    balanced = datasets.subset(rows, 20, seed=1, balanced=True)
    assert balanced["label"].value_counts().to_dict() == {"COVID": 10, "NONCOVID": 10}
    proportional = datasets.subset(rows, 20, seed=1, balanced=False)
    assert proportional["label"].value_counts().to_dict() == {"NONCOVID": 16, "COVID": 4}
    assert datasets.subset(rows, 20, seed=1, balanced=True).equals(balanced)
    assert datasets.subset(rows, None, seed=1, balanced=True) is rows


def test_load_split_skips_and_records_a_bad_file(tmp_path):
    m = make_manifest(tmp_path)
    (tmp_path / "imgs" / "3.png").unlink()
    train = datasets.load_split(m, "train", 32, root=tmp_path, cache_root=tmp_path / "cache")
    assert train.x.shape == (7, 32, 32) and len(train.y) == 7
    assert train.failures["reason"].tolist() == ["missing_file"]
    assert train.y.tolist() == (train.rows["label"] == "COVID").astype(float).tolist()


def test_dataset_channels_shuffle_and_augmentation(tmp_path):
    m = make_manifest(tmp_path)
    train = datasets.load_split(m, "train", 32, root=tmp_path, cache_root=tmp_path / "cache")
    plain = next(iter(datasets.make_dataset(train, batch_size=8, channels=3)))
    assert plain[0].shape == (8, 32, 32, 3) and plain[1].shape == (8, 1)
    assert np.array_equal(plain[0].numpy()[..., 0], train.x.astype("float32"))
    assert np.array_equal(plain[0].numpy()[..., 0], plain[0].numpy()[..., 2])
    gray = next(iter(datasets.make_dataset(train, batch_size=8, channels=1)))
    assert gray[0].shape == (8, 32, 32, 1)
    shuffled = next(iter(datasets.make_dataset(train, batch_size=8, shuffle_seed=3)))
    assert sorted(shuffled[1].numpy().ravel().tolist()) == sorted(train.y.tolist())
    augmented = next(iter(datasets.make_dataset(train, batch_size=8, augment=datasets.augmentation_layers(0))))
    assert not np.array_equal(augmented[0].numpy(), plain[0].numpy())
    with pytest.raises(config.ConfigError, match="channels must be 1 or 3"):
        datasets.make_dataset(train, batch_size=8, channels=2)


def test_fit_times_epochs_keeps_the_best_model_and_writes_history(tmp_path):
    import keras

    m = make_manifest(tmp_path)
    cache = tmp_path / "cache"
    train = datasets.load_split(m, "train", 32, root=tmp_path, cache_root=cache)
    val = datasets.load_split(m, "val", 32, root=tmp_path, cache_root=cache)
    training.seed_everything(1)
    model = models.build_custom_cnn(32, 3)
    models.compile_model(model, "adam", 1e-3, "binary_crossentropy")
    fit = training.fit(
        model,
        datasets.make_dataset(train, batch_size=4),
        datasets.make_dataset(val, batch_size=4),
        epochs=3,
        folder=tmp_path / "run",
        verbose=0,
    )
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert {"accuracy", "auc", "loss", "val_accuracy", "val_auc", "val_loss", "seconds"} <= set(history.columns)
    assert (history["seconds"] > 0).all()
    assert fit.best_epoch == int(history.loc[history["val_auc"].idxmax(), "epoch"])
    assert fit.minutes_per_epoch == pytest.approx(fit.execution_minutes / 3)
    assert isinstance(keras.saving.load_model(fit.model_path), keras.Model)


IDENTITY = dict(
    datasets.STUDY_AUGMENTATION, rotation_degrees=0.0, shift=0.0, shear_degrees=0.0, zoom=0.0, horizontal_flip=False
)


def test_augmentation_with_nothing_to_do_is_the_identity_and_off_outside_training():
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    assert np.abs(datasets.augmentation_layers(1, IDENTITY)(x).numpy() - x).max() < 1e-3
    study = datasets.augmentation_layers(1)
    assert np.array_equal(study(x, training=False).numpy(), x)
    assert np.abs(study(x).numpy() - x).mean() > 10


def test_flip_mirrors_some_images_and_keeps_the_others():
    x = np.random.default_rng(1).uniform(0, 255, (16, 8, 8, 1)).astype("float32")
    y = datasets.augmentation_layers(2, dict(IDENTITY, horizontal_flip=True))(x).numpy()
    same = [np.allclose(y[i], x[i], atol=1e-3) for i in range(16)]
    mirrored = [np.allclose(y[i], x[i][:, ::-1], atol=1e-3) for i in range(16)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 0 < sum(mirrored) < 16


def test_shift_moves_a_square_and_rotation_turns_it_about_the_centre():
    img = np.zeros((1, 65, 65, 1), "float32")
    img[0, 30:35, 50:55, 0] = 255  # a bright square right of the centre (32, 32)
    centre = np.array([32.0, 52.0])
    shifted = datasets.augmentation_layers(3, dict(IDENTITY, shift=0.2))(img).numpy()[0, ..., 0]
    moved = np.argwhere(shifted > 128).mean(0)
    assert 0 < np.abs(moved - centre).max() <= 0.2 * 65 + 1
    turned = datasets.augmentation_layers(4, dict(IDENTITY, rotation_degrees=40.0))(img).numpy()[0, ..., 0]
    spot = np.argwhere(turned > 128).mean(0)
    assert np.linalg.norm(spot - 32) == pytest.approx(20.0, abs=1.5)  # same distance from the centre


def test_same_seed_same_training_with_augmentation(tmp_path):
    m = make_manifest(tmp_path, n_per_label=8)
    train = datasets.load_split(m, "train", 32, root=tmp_path, cache_root=tmp_path / "cache")

    def losses():
        training.seed_everything(7)
        model = models.build_custom_cnn(32, 3)
        models.compile_model(model, "rmsprop", 1e-3, "binary_crossentropy")
        data = datasets.make_dataset(train, batch_size=4, shuffle_seed=7, augment=datasets.augmentation_layers(7))
        return model.fit(data, epochs=2, verbose=0, shuffle=False).history["loss"]

    assert losses() == losses()
