"""Score your own X-ray: a fake build made here, real mirror images, bad files, an OOD photograph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import pattern, save
from PIL import Image

from cxr_utils import __main__ as cli
from cxr_utils import config, predict, registry
from cxr_utils.analysis import heldout
from cxr_utils.data import images, manifest
from cxr_utils.modeling import backbones, features, models

MIRROR_IMAGES = [
    "actualmed/images/CR.1.2.840.113564.1722810170.20200319202613984410.1003000225002.png",
    "radiography/COVID-19_Radiography_Dataset/COVID/images/COVID-1.png",
    "radiography/COVID-19_Radiography_Dataset/Normal/images/Normal-1000.png",
]


@pytest.fixture
def build(tmp_path, fixture_root, clean_env):
    """A finished build in miniature: a data merge of the fixture sources, one final custom model
    and the comparison run that names it (its val-chosen threshold 0.4)."""
    out = tmp_path / "out"
    clean_env.setenv("CXR_OUTPUT_DIR", str(out))
    clean_env.setenv("CXR_OFFLINE", "1")
    merged = manifest.merge_sources(fixture_root, ["radiography", "cohen", "figure1"], progress=False)
    data_folder = registry.DATA_MERGE.run_folder("default", out)
    manifest.write_outputs(merged, data_folder)
    run_folder = registry.CUSTOM_CNN.run_folder("final_run02_seed1", out)
    run_folder.mkdir(parents=True)
    models.build_custom_cnn(32, 3).save(run_folder / "model.keras")
    result = {
        "run": "final_run02_seed1",
        "kind": "custom",
        "role": "final",
        "screened_as": "run02",
        "status": "complete",
        "profile": "smoke",
        "effective": {"image_size": 32, "channels": 3, "seed": 1},
        "data": {"manifest": str(data_folder / "manifest.csv"), "n_per_split": {"train": 10}},
        "provenance": {"git_commit": "abc123"},
    }
    (run_folder / "result.json").write_text(json.dumps(result))
    comparison = registry.COMPARISON.run_folder("comparison", out)
    comparison.mkdir(parents=True)
    (comparison / "result.json").write_text(
        json.dumps(
            {
                "status": "complete",
                "chosen": {"custom": "run02"},
                "final_fits": {"custom run02": ["final_run02_seed1"]},
                "heldout": {"custom final_run02_seed1": {"threshold": 0.4}},
            }
        )
    )
    clean_env.setattr(config, "SHARED_DATA_ROOT", fixture_root)
    clean_env.setenv("CXR_DATA_ROOT", str(fixture_root))
    return out


def test_no_build_names_the_folder_looked_in(tmp_path):
    with pytest.raises(
        predict.NoBuild, match=r"looked for .*nothing/04_comparison/comparison/result\.json.*run `make report` first"
    ):
        predict.load_models("comparison", out=tmp_path / "nothing")


@pytest.mark.mirror
def test_mirror_images_score_as_the_report_scores_them(build, mirror_root, tmp_path):
    found = predict.load_models("comparison", ("custom",), build)
    assert [m.key.run for m in found] == ["final_run02_seed1"] and found[0].threshold == 0.4
    paths = [mirror_root / p for p in MIRROR_IMAGES]
    table = predict.predict(paths, found, None, tmp_path / "pred")
    assert table["probability"].between(0, 1).all() and len(table) == 3
    assert set(table["decision"]) <= {"COVID-19", "not COVID-19"}
    assert (table["decision"] == "COVID-19").tolist() == (table["probability"] >= 0.4).tolist()
    rows = pd.DataFrame(
        {
            "image_id": MIRROR_IMAGES,
            "path": MIRROR_IMAGES,
            "split": "test",
            "label": "COVID",
            "sha256": [images.file_sha256(p) for p in paths],
        }
    )
    _, report_scores, _, _ = heldout.score_split(found[0].result, rows, "test", mirror_root)
    assert np.allclose(table["probability"].to_numpy(), report_scores, atol=1e-6)
    assert table["saliency"].map(lambda f: Path(f).is_file()).all() and table["saliency"].nunique() == len(paths)
    assert (tmp_path / "pred" / "contact_sheet.png").is_file()


def test_two_images_of_one_name_keep_their_own_overlays(build, tmp_path):
    save(tmp_path / "a" / "same.png", pattern(1, 64))
    save(tmp_path / "b" / "same.png", pattern(2, 64))
    table = predict.predict(
        [tmp_path / "a", tmp_path / "b"], predict.load_models("comparison", ("custom",), build), None, tmp_path / "p"
    )
    overlays = [np.asarray(Image.open(f)) for f in table["saliency"]]
    assert table["saliency"].nunique() == 2 and not np.array_equal(*overlays)


def test_a_one_channel_custom_model_is_scored(build, tmp_path):
    folder = registry.CUSTOM_CNN.run_folder("final_run02_seed1", build)
    models.build_custom_cnn(32, 3, channels=1).save(folder / "model.keras")
    save(tmp_path / "one.png", pattern(3, 64))
    table = predict.predict(
        [tmp_path / "one.png"], predict.load_models("comparison", ("custom",), build), None, tmp_path / "p"
    )
    assert table["error"].eq("").all() and 0 <= table["probability"].iloc[0] <= 1


def test_bad_files_get_a_row_with_the_reason_and_the_batch_goes_on(build, tmp_path):
    folder = tmp_path / "mine"
    save(folder / "good.png", pattern(1, 64))
    save(folder / "sixteen.png", pattern(2, 64), mode="I;16")
    save(folder / "alpha.png", pattern(3, 64), mode="RGBA")
    (folder / "text.png").write_text("not an image at all")
    full = save(folder / "full.jpg", pattern(4, 256), quality=95)
    (folder / "truncated.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    Image.new("L", (8000, 6000)).save(folder / "huge.png")
    table = predict.predict([folder], predict.load_models("comparison", ("custom",), build), None, tmp_path / "p")
    errors = table.set_index(table["path"].map(lambda p: p.rsplit("/", 1)[-1]))["error"]
    assert errors["text.png"].startswith("unreadable") and errors["truncated.jpg"].startswith("truncated")
    assert errors["huge.png"].startswith("too_large")
    scored = table[table["error"] == ""].assign(name=lambda t: t["path"].map(lambda p: p.rsplit("/", 1)[-1]))
    scored = scored.set_index("name")
    assert set(scored.index) == {"good.png", "sixteen.png", "alpha.png"}
    assert "pixel mode I;16" in scored.loc["sixteen.png", "note"] and "RGBA" in scored.loc["alpha.png", "note"]


def test_a_colour_photograph_is_flagged_out_of_distribution(build, tmp_path, mirror_root):
    found = predict.load_models("comparison", ("custom",), build)
    reference = predict.reference_for(found, names=("mobilenet025",))
    assert reference.backbone == "mobilenet025" and np.isfinite(reference.threshold)
    rng = np.random.default_rng(0)
    photo = np.zeros((120, 160, 3), np.uint8)
    photo[..., 0], photo[..., 1], photo[..., 2] = 210, rng.integers(0, 255, (120, 160)), 40
    Image.fromarray(photo).save(tmp_path / "photo.jpg")
    cross = np.zeros((224, 224), np.uint8)
    cross[100:124], cross[:, 100:124] = 255, 255  # grey, but no chest: far from every training image
    Image.fromarray(cross).save(tmp_path / "cross.png")
    table = predict.predict(
        [tmp_path / "photo.jpg", tmp_path / "cross.png"], found, reference, tmp_path / "p", saliency_maps=False
    ).set_index("path")
    assert table.loc[str(tmp_path / "photo.jpg"), "ood_flag"]
    assert "colour" in table.loc[str(tmp_path / "photo.jpg"), "note"]
    assert table.loc[str(tmp_path / "cross.png"), "ood_flag"]
    assert table.loc[str(tmp_path / "cross.png"), "ood_score"] > reference.threshold


def test_the_command_prints_the_caveat_and_writes_its_files(build, tmp_path, capsys):
    save(tmp_path / "one.png", pattern(5, 64))
    shortcuts = registry.SHORTCUTS.run_folder("shortcuts", build)
    shortcuts.mkdir(parents=True)
    verdict = ["The source is only partly visible.", "These numbers do not show that the models detect COVID-19."]
    (shortcuts / "result.json").write_text(json.dumps({"status": "complete", "verdict": verdict}))
    assert (
        cli.main(
            [
                "predict",
                str(tmp_path / "one.png"),
                "--model",
                "custom",
                "--out-root",
                str(build),
                "--out",
                str(tmp_path / "cli"),
                "--no-saliency",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "not a medical device" in printed and "P(COVID-19) = " in printed
    assert verdict[-1] in printed and verdict[0] not in printed  # the verdict's conclusion, in one sentence
    provenance = json.loads((tmp_path / "cli" / "provenance.json").read_text())
    assert provenance["models"][0]["commit"] == "abc123" and provenance["ood"]["backbone"]
    assert cli.main(["predict", str(tmp_path / "one.png"), "--out-root", str(tmp_path / "empty")]) == 2
    assert "run `make report` first" in capsys.readouterr().err


def axial_ct_slice(size: int = 512) -> np.ndarray:
    """A made CT slice: a bright body ellipse with two dark lungs and a bright spine, on black."""
    yy, xx = np.mgrid[:size, :size] / size
    ct = np.zeros((size, size), np.uint8)
    ct[((xx - 0.5) / 0.45) ** 2 + ((yy - 0.5) / 0.33) ** 2 < 1] = 170
    for centre in (0.33, 0.67):
        ct[((xx - centre) / 0.14) ** 2 + ((yy - 0.47) / 0.21) ** 2 < 1] = 25
    ct[(xx - 0.5) ** 2 + (yy - 0.72) ** 2 < 0.06**2] = 250
    return ct


@pytest.mark.mirror
def test_lateral_views_and_a_ct_slice_are_flagged_against_frontal_training_images(mirror_root):
    """A reference fitted on 230 frontal mirror images (MobileNet, ImageNet weights) flags real
    lateral views from Cohen's collection and a made CT slice, and few unseen frontal images."""
    weights_file = config.PROJECT_ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
    if not weights_file.is_file():
        pytest.skip(f"MobileNet weights not found at {weights_file}")
    weights = backbones.resolve_weights("mobilenet025", explicit=str(weights_file))
    extractor = backbones.build_extractor("mobilenet025", weights, 224)

    def vectors(grays: list[np.ndarray]) -> np.ndarray:
        x = np.stack([images.resize_gray8(gray, 224) for gray in grays])
        return features.extract(extractor, x, [f"i{k}" for k in range(len(x))], None).features

    radiography = mirror_root / "radiography" / "COVID-19_Radiography_Dataset"
    normal = sorted((radiography / "Normal" / "images").glob("*.png"))
    covid = sorted((radiography / "COVID" / "images").glob("*.png"))
    meta = pd.read_csv(mirror_root / "cohen" / "metadata.csv")
    xray = meta[meta["modality"] == "X-ray"]
    frontal = [mirror_root / "cohen" / "images" / f for f in xray[xray["view"].isin(["PA", "AP"])]["filename"]]
    lateral = [mirror_root / "cohen" / "images" / f for f in xray[xray["view"] == "L"]["filename"]][:8]

    def load(paths: list[Path]) -> list[np.ndarray]:
        return [images.load_gray8(path) for path in paths]

    train = load(normal[:100] + covid[:100] + frontal[:30])
    val = load(normal[100:130] + covid[100:130] + frontal[30:40])
    unseen_frontal = load(normal[130:135] + covid[130:135])
    reference = predict.OODReference.fitted("mobilenet025", weights, 224, "float32", vectors(train), vectors(val))
    assert (reference.scores(vectors(load(lateral))) > reference.threshold).sum() >= 6
    assert reference.scores(vectors([axial_ct_slice()]))[0] > reference.threshold
    assert (reference.scores(vectors(unseen_frontal)) > reference.threshold).sum() <= 1


class PlantedLungs:
    """Stands in for the lung U-Net: two lungs for a bright image, nothing (a flagged mask) for a dark one."""

    input_shape = (None, 32, 32, 1)

    def predict_on_batch(self, batch):
        rows, cols = (np.mgrid[:32, :32] + 0.5) / 32
        two = ((np.abs(cols - 0.5) - 0.2) / 0.13) ** 2 + ((rows - 0.5) / 0.3) ** 2 <= 1
        bright = batch.mean(axis=(1, 2, 3)) > 64
        return np.where(bright[:, None, None, None], two[None, ..., None], 0.0).astype(np.float32)


def test_overlays_outline_the_lungs_and_say_which_mask(build, tmp_path):
    save(tmp_path / "in" / "bright.png", (pattern(1, 64) // 2 + 120).astype(np.uint8))
    save(tmp_path / "in" / "dark.png", (pattern(2, 64) // 8).astype(np.uint8))
    found = predict.load_models("comparison", ("custom",), build)
    with_model = predict.predict(
        [tmp_path / "in"], found, None, tmp_path / "u", lung=predict.LungField(PlantedLungs(), "planted")
    )
    by_name = with_model.set_index(with_model["path"].map(lambda p: Path(p).name))
    assert by_name.loc["bright.png", "lung_mask"] == "U-Net"
    assert by_name.loc["dark.png", "lung_mask"].startswith("fixed rectangle (U-Net mask flagged: area")
    shares = with_model["lung_share"]  # NaN where an untrained model's Grad-CAM map is blank
    assert (shares.between(0, 1) | shares.isna()).all()
    overlay = np.asarray(Image.open(by_name.loc["bright.png", "saliency"]))
    assert ((overlay == (255, 255, 0)).all(axis=-1)).sum() > 20  # the outline, in yellow
    without = predict.predict([tmp_path / "in"], found, None, tmp_path / "r")  # no lung model given
    assert without["lung_mask"].eq("fixed rectangle (no lung model)").all()
    plain = predict.predict([tmp_path / "in"], found, None, tmp_path / "p", saliency_maps=False)
    assert plain["lung_mask"].eq("").all() and plain["lung_share"].isna().all()  # no map, no share


def test_the_lung_field_is_the_build_s_cached_model_or_the_stated_rectangle(build, tmp_path, capsys):
    from cxr_utils.modeling.segmentation import build_unet

    fallback = predict.lung_field(build, profile="smoke")  # nothing cached under this build: never trains
    assert fallback.model is None and "no lung model cached under" in fallback.description
    assert str(build / "cache" / "lungs") in fallback.description
    model_file = build / "cache" / "lungs" / "abc.keras"
    model_file.parent.mkdir(parents=True)
    build_unet(16, (4, 8)).save(model_file)
    shortcuts = registry.SHORTCUTS.run_folder("shortcuts", build)
    shortcuts.mkdir(parents=True)
    (shortcuts / "result.json").write_text(
        json.dumps({"status": "complete", "verdict": ["x."], "lung_segmentation": {"model": str(model_file)}})
    )
    used = predict.lung_field(build)
    assert used.model is not None and "shortcut run 'shortcuts'" in used.description and "abc.keras" in used.description
    save(tmp_path / "one.png", pattern(5, 64))
    argv = ["predict", str(tmp_path / "one.png"), "--model", "custom", "--out-root", str(build)]
    assert cli.main([*argv, "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "lungs outlined on the overlays" in printed and "abc.keras" in printed and "Grad-CAM in lungs" in printed
    provenance = json.loads((tmp_path / "cli" / "provenance.json").read_text())
    assert "abc.keras" in provenance["lung_field"]
