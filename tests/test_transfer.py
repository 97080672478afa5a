"""Backbones: weights resolver and its messages, hash check, Xception provisioning, features."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import params_file, pattern, save

from cxr_utils import config
from cxr_utils.modeling import backbones, features, provision
from cxr_utils.reporting import study
from cxr_utils.runs import runner

MOBILENET_FILE = "mobilenet_2_5_224_tf_no_top.h5"


@pytest.fixture
def places(tmp_path, clean_env):
    """Empty weights folders in every place the resolver looks, and no download."""
    folders = {name: tmp_path / name for name in ("explicit", "env", "outputs", "shared", "keras")}
    for folder in folders.values():
        folder.mkdir()
    clean_env.setenv("CXR_WEIGHTS_DIR", str(folders["env"]))
    clean_env.setenv("CXR_OUTPUT_DIR", str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "weights").symlink_to(folders["outputs"])
    clean_env.setattr(config, "PROJECT_ROOT", tmp_path / "project")
    (tmp_path / "shared").rmdir()
    folders["shared"] = tmp_path / "shared" / "weights"
    folders["shared"].mkdir(parents=True)
    clean_env.setenv("KERAS_HOME", str(tmp_path / "keras"))
    folders["keras"] = tmp_path / "keras" / "models"
    folders["keras"].mkdir()
    clean_env.setenv("CXR_OFFLINE", "1")
    return folders


VGG = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def put(folder: Path, name: str = VGG, content: bytes = b"weights") -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def test_resolver_order(places):
    for where in ("keras", "shared", "outputs", "env"):
        put(places[where], content=where.encode())
    explicit = put(places["explicit"], "mine.h5")
    assert backbones.resolve_weights("vgg16", explicit=str(explicit)).file == str(explicit)
    order = []
    for _where in ("env", "outputs", "shared", "keras"):
        found = backbones.resolve_weights("vgg16")
        order.append(Path(found.file).read_bytes().decode())
        Path(found.file).unlink()
    assert order == ["env", "outputs", "shared", "keras"]


def test_missing_weights_message_names_backbone_files_places_and_remedies(places):
    with pytest.raises(backbones.WeightsNotFound) as err:
        backbones.resolve_weights("densenet169", download=backbones.keras_download)
    text = str(err.value)
    assert "'densenet169'" in text and "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5" in text
    for where in ("env", "shared", "keras"):
        assert str(places[where]) in text
    assert "CXR_WEIGHTS_DIR" in text and "weights: none" in text
    assert "Keras download (off: CXR_OFFLINE is set)" in text
    with pytest.raises(backbones.WeightsNotFound, match="weights provision xception"):
        backbones.resolve_weights("xception")
    with pytest.raises(backbones.WeightsNotFound, match="does not exist"):
        backbones.resolve_weights("vgg16", explicit=str(places["explicit"] / "nope.h5"))


def test_first_available_passes_over_missing_weights_saying_why(places):
    put(places["env"])
    backbone, weights, passed = backbones.first_available(("densenet169", "vgg16"))
    assert backbone == "vgg16" and weights.file == str(places["env"] / VGG)
    assert passed == ["densenet169: no ImageNet weights for backbone 'densenet169'"]
    with pytest.raises(backbones.WeightsNotFound, match=r"any of xception, densenet169: xception: no ImageNet"):
        backbones.first_available(("xception", "densenet169"))


def test_download_is_the_last_resort_and_its_failure_is_reported(places, clean_env):
    clean_env.delenv("CXR_OFFLINE")

    def offline(backbone):
        raise OSError("network unreachable")

    with pytest.raises(backbones.WeightsNotFound, match="Keras download \\(OSError: network unreachable\\)"):
        backbones.resolve_weights("vgg16", download=offline)

    def like_keras(backbone):  # what keras.utils.get_file raises when the URL cannot be fetched
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -2]")

    with pytest.raises(backbones.WeightsNotFound, match="Keras download \\(Exception: URL fetch failure"):
        backbones.resolve_weights("vgg16", download=like_keras)
    fetched = put(places["keras"], "elsewhere.h5")
    assert backbones.resolve_weights("vgg16", download=lambda b: fetched).origin == "downloaded by Keras"


def test_random_init_only_when_asked_and_labelled(places):
    none = backbones.resolve_weights("vgg16", weights="none")
    assert none.file is None and none.label == "random init" and none.as_dict()["label"] == "random init"
    with pytest.raises(config.ConfigError, match="'imagenet' or 'none'"):
        backbones.resolve_weights("vgg16", weights="random")
    with pytest.raises(config.ConfigError, match="unknown backbone 'resnet'"):
        backbones.resolve_weights("resnet")


def test_mobilenet_hash_is_checked(places):
    put(places["env"], MOBILENET_FILE, b"not the official file")
    with pytest.raises(backbones.WeightsHashMismatch, match="dbdb03ee"):
        backbones.resolve_weights("mobilenet025")


def test_the_shared_mobilenet_file_passes_its_hash_check(mirror_root):
    shared = mirror_root.parent / "weights" / MOBILENET_FILE
    if not shared.is_file():
        pytest.skip(f"{shared} not present")
    found = backbones.resolve_weights("mobilenet025", explicit=str(shared))
    assert found.sha256 == backbones.BACKBONES["mobilenet025"].sha256[MOBILENET_FILE]


def make_fake_wheel(tmp_path, layer_name="xception", trained=True, frozen=True) -> tuple[Path, object]:
    """A wheel with the upstream member layout holding a small model of the same structure."""
    import keras

    base = keras.applications.Xception(weights=None, include_top=False, input_shape=(71, 71, 3), name=layer_name)
    if trained:  # stand-in for ImageNet training: BatchNorm statistics move off 0/1
        base(np.random.default_rng(0).uniform(-1, 1, (4, 71, 71, 3)).astype("float32"), training=True)
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_mean.assign(layer.moving_mean.numpy() + 0.5)
    base.trainable = not frozen
    inputs = keras.Input((71, 71, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(8, activation="relu")(x)))
    saved = tmp_path / "model.keras"
    model.save(saved)
    wheel = tmp_path / "pneumonia_model_package-0.3.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(saved, "pneumonia_model_package/trained_models/pneumonia_xception_model_val-acc_0.861.keras")
        zf.writestr("pneumonia_model_package/__init__.py", "")
    return wheel, base


@pytest.mark.slow
def test_xception_provisioning_extracts_verifies_and_records(tmp_path, places):
    import keras

    wheel, original = make_fake_wheel(tmp_path)
    target = provision.provision("xception", wheel=str(wheel))  # no --dest: where the resolver looks first
    assert target == places["env"] / "xception_imagenet_notop.weights.h5"
    note = json.loads(backbones.provenance_file(target).read_text())
    assert note["tensors"] == len(original.weights) and "pneumonia-model-package==0.3.0" in note["origin"]
    fresh = keras.applications.Xception(weights=None, include_top=False)
    fresh.load_weights(target)
    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), original.get_weights()))
    found = backbones.resolve_weights("xception")
    assert found.file == str(target) and found.sha256 == note["sha256"] and "PyPI" in found.origin
    assert provision.already_provisioned(target)
    assert provision.provision("xception", dest=str(places["env"])) == target  # no download: already there
    target.write_bytes(b"damaged")
    assert not provision.already_provisioned(target)


@pytest.mark.slow
def test_provisioning_rejects_a_model_without_the_xception_layer(tmp_path, places):
    wheel, _ = make_fake_wheel(tmp_path, layer_name="something_else")
    with pytest.raises(provision.ProvisionError, match="no layer named 'xception'"):
        provision.provision("xception", wheel=str(wheel), dest=str(places["env"]))
    with pytest.raises(provision.ProvisionError, match="only xception"):
        provision.provision("vgg16")


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault, message",
    [({"frozen": False}, "was trainable in the source model"), ({"trained": False}, "untrained BatchNorm statistics")],
    ids=["trained-in-the-source-model", "untrained"],
)
def test_provisioning_rejects_xception_weights_that_are_not_imagenets(tmp_path, places, fault, message):
    wheel, _ = make_fake_wheel(tmp_path, **fault)
    with pytest.raises(provision.ProvisionError, match=message):
        provision.provision("xception", wheel=str(wheel), dest=str(places["env"]))
    assert not (places["env"] / provision.TARGET).exists()


@pytest.mark.parametrize("name, module", [("vgg16", "vgg16"), ("xception", "xception"), ("densenet169", "densenet")])
def test_preprocessing_layer_matches_keras_preprocess_input(name, module):
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    layer = backbones.preprocessing_layer_class()(backbones.BACKBONES[name].preprocess)
    expected = getattr(keras.applications, module).preprocess_input(x.copy())
    assert np.allclose(layer(x).numpy(), expected, atol=1e-4)


def small_mobilenet(mirror_weights: bool = True):
    weights_file = config.PROJECT_ROOT.parent / "shared" / "weights" / MOBILENET_FILE
    weights = (
        backbones.resolve_weights("mobilenet025", explicit=str(weights_file))
        if weights_file.is_file()
        else backbones.resolve_weights("mobilenet025", weights="none")
    )
    return backbones.build_extractor("mobilenet025", weights, 64), weights


def test_head_on_cached_features_equals_the_end_to_end_model(tmp_path):
    from cxr_utils.modeling import training

    extractor, weights = small_mobilenet()
    extractor.trainable = False
    images = np.stack([pattern(k, 64) for k in range(12)])
    hashes = [f"{k:064x}" for k in range(12)]
    folder = tmp_path / "features-abc-64px"
    first = features.extract(extractor, images, hashes, folder, batch_size=5)
    again = features.extract(extractor, images, hashes, folder)
    assert (first.computed, again.computed, again.reused) == (12, 0, 12)
    assert np.array_equal(first.features, again.features)
    y = np.array([0, 1] * 6, dtype=np.float32)
    training.seed_everything(0)
    head = features.build_head(extractor.output_shape[-1])
    features.compile_head(head, 1e-2)
    head.fit(features.feature_dataset(first.features, y, 4, 0), epochs=2, verbose=0)
    via_features = head.predict(first.features, verbose=0)
    model = features.end_to_end(extractor, head)
    via_images = model.predict(np.repeat(images[..., None], 3, -1).astype("float32"), verbose=0)
    assert np.abs(via_features - via_images).max() < 1e-4


def test_random_init_features_are_not_cached(tmp_path):
    none = backbones.Weights(None, None, backbones.RANDOM_INIT)
    assert features.cache_folder("mobilenet025", none, 64, root=tmp_path) is None
    extractor = backbones.build_extractor("mobilenet025", none, 32)
    images = np.stack([pattern(k, 32) for k in range(3)])
    hashes = [f"{k:064x}" for k in range(3)]
    assert features.extract(extractor, images, hashes, None).computed == 3
    assert features.extract(extractor, images, hashes, None).computed == 3  # nothing was kept
    assert not any(tmp_path.iterdir())


def test_unfreezing_keeps_batchnorm_frozen(tmp_path):
    import keras

    extractor, _ = small_mobilenet()
    extractor.trainable = False
    model = features.end_to_end(extractor, features.build_head(extractor.output_shape[-1]))
    head_only = sum(int(w.numpy().size) for w in model.trainable_weights)
    unfrozen = backbones.unfreeze_top(model, 10)
    net = backbones._find_backbone(model)
    top = net.layers[-10:]
    convs = [layer for layer in top if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]
    assert unfrozen == len(convs) > 0
    assert all(layer.trainable for layer in convs)
    expected = head_only + sum(int(w.numpy().size) for layer in convs for w in layer.weights)
    assert sum(int(w.numpy().size) for w in model.trainable_weights) == expected
    assert all(not layer.trainable for layer in top if isinstance(layer, keras.layers.BatchNormalization))
    assert all(not layer.trainable for layer in net.layers[:-10])
    head_weights = {id(w) for w in model.layers[-1].weights}
    assert head_weights <= {id(w) for w in model.trainable_weights}


def test_transfer_params_files_match_the_study():
    spec = config.notebook_parameters("03_transfer_learning")
    table = study.table1().set_index("run")
    files = {f.stem: config.load_params_file(f) for f in (config.PROJECT_ROOT / "params" / "transfer").glob("*.yaml")}
    assert set(files) == {
        "vgg16",
        "xception",
        "inceptionv3",
        "densenet169",
        "inceptionv3_100ep",
        "mobilenet025",
        "xception_finetune",
    }
    for name, params in files.items():
        config.validate_parameters(params, spec, name)
        backbones.get_backbone(params["backbone"])
        if params["study_run"]:
            row = table.loc[params["study_run"]]
            assert row["model_name"].lower() == params["backbone"]
            assert (params["batch_size"], params["epochs"], params["image_size"]) == (
                row["batch_size"],
                row["epochs"],
                row["image_size"],
            )
            assert params["learning_rate"] == row["learning_rate"]
    assert files["xception_finetune"]["fine_tune_layers"] > 0


@pytest.mark.slow
def test_a_run_without_weights_is_reported_not_run_and_the_batch_goes_on(tmp_path, places):
    params = tmp_path / "vgg16.yaml"
    params.write_text("backbone: vgg16\n")
    outcomes = runner.run_batch(
        "notebooks/03_transfer_learning.ipynb", [params], profile="smoke", out=tmp_path / "runs"
    )
    assert outcomes[0].status == "not run" and outcomes[0].detail.startswith("no weights: no ImageNet weights")
    result = json.loads((tmp_path / "runs" / "03_transfer_learning" / "vgg16" / "result.json").read_text())
    assert result["status"].startswith("skipped: no weights")


def test_the_transfer_stage_features_are_provisioned_once_under_the_runs_own_cache_key(mirror_root, tmp_path, capsys):
    """Two runs of one backbone share one pass over every image of the manifest; a run without
    weights and a random-init run are left to themselves; an unreadable image does not stop it."""
    import keras
    import pandas as pd

    from cxr_utils import registry
    from cxr_utils.data import images as image_io
    from cxr_utils.runs import pipeline

    covid = sorted((mirror_root / "radiography").rglob("COVID-*.png"))[:3]
    normal = sorted((mirror_root / "radiography").rglob("Normal-*.png"))[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    rows = []
    for k, (path, split) in enumerate(zip([*covid, *normal, broken], ["train", "val", "test", "train", "test", "val"])):
        label = "COVID" if path in covid else "NONCOVID"
        digest = image_io.file_sha256(path)
        rows.append({"image_id": f"i{k}", "path": str(path), "label": label, "split": split, "sha256": digest})
    manifest = pd.DataFrame(rows).assign(group_id=lambda t: t["image_id"], patient_id=lambda t: t["image_id"])
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    weights_file = config.PROJECT_ROOT.parent / "shared" / "weights" / MOBILENET_FILE
    common = f"manifest: {tmp_path / 'manifest.csv'}\nimage_size: 32\nweights_path: {weights_file}\n"
    common += "precision: mixed_bfloat16\n"  # not the default policy, so that restoring it is checked
    runs = {
        "mobilenet": f"backbone: mobilenet025\n{common}",
        "mobilenet_finetune": f"backbone: mobilenet025\nfine_tune_layers: 2\n{common}",
        "random": f"backbone: mobilenet025\nweights: none\nimage_size: 32\nmanifest: {tmp_path / 'manifest.csv'}\n",
        "vgg16": f"backbone: vgg16\nimage_size: 32\nmanifest: {tmp_path / 'manifest.csv'}\n",
    }
    files = [params_file(tmp_path, name, text) for name, text in runs.items()]
    stage = pipeline.Stage("transfer learning", registry.TRANSFER, params_from=lambda kind, profile, out: files)
    before = keras.mixed_precision.global_policy().name
    out = tmp_path / "out"
    pipeline.provision_features(stage, "smoke", out)
    first = capsys.readouterr().out
    pipeline.provision_features(stage, "smoke", out)
    again = capsys.readouterr().out
    assert keras.mixed_precision.global_policy().name == before
    weights = backbones.resolve_weights("mobilenet025", explicit=str(weights_file))
    cache = features.cache_folder("mobilenet025", weights, 32, "mixed_bfloat16", root=out / "cache" / "features")
    assert sorted(p.parent.parent for p in cache.rglob("*.npy")) == [cache] * 5  # the five readable images
    assert all(features.vector_path(cache, r["sha256"]).is_file() for r in rows[:5])
    assert first.count("frozen features") == 1 and "5 images computed, 0 found" in first
    assert "0 images computed, 5 found" in again


def test_a_feature_cache_that_cannot_be_filled_is_reported_and_left_to_the_runs(tmp_path):
    from cxr_utils.runs import pipeline

    damaged = tmp_path / "xception_imagenet_notop.weights.h5"
    damaged.write_bytes(b"not an h5 file")
    weights = backbones.Weights(str(damaged), "0" * 64, "a test")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image_id,path,label,split,sha256,group_id,patient_id\n", encoding="utf-8")
    said = pipeline.fill_features("xception", weights, 71, tmp_path / "cache", tmp_path / "missing.csv", tmp_path)
    assert said.startswith("not provisioned (ConfigError: manifest") and "its runs compute their own" in said
    rows = "i0,{p},COVID,train,{h},i0,i0\n".format(p=str(save(tmp_path / "x.png", pattern(1))), h="ab" * 32)
    manifest.write_text(manifest.read_text(encoding="utf-8") + rows, encoding="utf-8")
    said = pipeline.fill_features("xception", weights, 71, tmp_path / "cache", manifest, tmp_path)
    assert said.startswith("not provisioned (") and "x.png" not in said  # the weights failed, not the image
    assert "its runs compute their own" in said and "TypeError" not in said
    assert not (tmp_path / "cache").exists()
