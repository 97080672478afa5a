"""The lung segmentation: overlap measures on planted masks, the JSRT label mapping, the plausibility
flag, the held-back split, the cache (key, atomic write, reuse without retraining), and, with the real
model (provisioned once into the output root's cache, slow), Dice on a few JSRT images above a floor
and non-chest images flagged."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_utils import config
from cxr_utils.analysis import lungs
from cxr_utils.analysis.saliency import central_lung_mask
from cxr_utils.modeling.segmentation import UNetSettings

JSRT_DICE_FLOOR = 0.90  # mean over the few images below (the full set measured 0.97)
JSRT_IMAGE_FLOOR = 0.80  # every one of them
JSRT_FEW = ("JPCLN001.png", "JPCLN050.png", "JPCLN100.png", "JPCLN150.png", "JPCNN001.png", "JPCNN050.png")
TINY = UNetSettings(size=32, filters=(4, 8), epochs=1, patience=1, batch_size=4, held_back=0.25, augment=False)


def two_lungs(size: int = 100, gap: int = 0) -> np.ndarray:
    """Two upright ellipses either side of the midline, like a frontal X-ray's lungs."""
    rows, cols = (np.mgrid[:size, :size] + 0.5) / size  # pixel centres
    left = ((cols - 0.3 - gap) / 0.13) ** 2 + ((rows - 0.5) / 0.3) ** 2 <= 1
    right = ((cols - 0.7 + gap) / 0.13) ** 2 + ((rows - 0.5) / 0.3) ** 2 <= 1
    return left | right


# --------------------------------------------------------------------------- measures


def test_dice_and_iou_of_planted_overlaps():
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[0:10, 0:10] = True  # 100 pixels
    b[5:15, 0:10] = True  # 100 pixels, 50 shared
    assert lungs.dice(a, b) == pytest.approx(0.5)
    assert lungs.iou(a, b) == pytest.approx(50 / 150)
    assert lungs.dice(a, a) == lungs.iou(a, a) == 1.0
    assert lungs.dice(a, ~a) == lungs.iou(a, ~a) == 0.0
    empty = np.zeros_like(a)
    assert lungs.dice(empty, empty) == 1.0 and lungs.dice(empty, a) == 0.0
    per_image = lungs.dice(np.stack([a, a, empty]), np.stack([b, a, a]))
    np.testing.assert_allclose(per_image, [0.5, 1.0, 0.0])
    with pytest.raises(ValueError, match="different shapes"):
        lungs.dice(a, a[:10])


def test_bootstrap_mean_brackets_the_mean_and_narrows_with_more_images():
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.9, 0.05, 20), rng.normal(0.9, 0.05, 500)
    small = lungs.bootstrap_mean(few, np.arange(20), n_boot=300)
    large = lungs.bootstrap_mean(many, np.arange(500), n_boot=300)
    assert small["low"] < small["value"] < small["high"] and small["n"] == 20
    assert large["high"] - large["low"] < small["high"] - small["low"]
    same = lungs.bootstrap_mean(np.full(10, 0.8), np.arange(10), n_boot=50)
    assert same["low"] == pytest.approx(0.8) and same["high"] == pytest.approx(0.8)


def test_jsrt_labels_map_to_both_lungs_without_the_heart():
    labels = np.array([[0, 150], [200, 250]], dtype=np.uint8)
    np.testing.assert_array_equal(lungs.jsrt_lungs(labels), [[False, True], [True, False]])


# --------------------------------------------------------------------------- plausibility


def test_two_lungs_are_plausible_and_other_shapes_are_flagged():
    assert lungs.implausible(two_lungs()) == ""
    assert "area" in lungs.implausible(np.zeros((100, 100), bool))
    assert "area" in lungs.implausible(np.ones((100, 100), bool))
    one = np.zeros((100, 100), bool)
    one[20:80, 20:80] = True
    assert lungs.implausible(one) == "one main part"
    lopsided = two_lungs()
    lopsided[:, 50:] = False
    lopsided[30:70, 60:63] = True  # a sliver on the right, well under a quarter of the left lung
    assert lungs.implausible(lopsided) == "one main part"
    side = np.zeros((100, 100), bool)
    side[10:45, 5:45] = True
    side[55:90, 5:45] = True  # two parts, both left of the midline
    assert lungs.implausible(side) == "parts on one side"


def test_clean_mask_fills_holes_and_drops_specks():
    mask = two_lungs()
    holed = mask.copy()
    holed[48:52, 28:32] = False
    holed[2, 2] = True  # a speck
    np.testing.assert_array_equal(lungs.clean_mask(holed), mask)


class StubModel:
    """Stands in for the U-Net: P(lung) is the planted mask (or zeros), whatever the image."""

    def __init__(self, mask: np.ndarray | None, side: int = 64):
        self.input_shape = (None, side, side, 1)
        self.mask = np.zeros((side, side)) if mask is None else mask.astype(np.float32)
        self.seen: list[tuple] = []

    def predict_on_batch(self, batch):
        self.seen.append(batch.shape)
        return np.repeat(self.mask[None, ..., None], len(batch), axis=0)


def test_lung_masks_come_back_at_the_callers_size_and_flag_empty_ones():
    images = np.random.default_rng(0).integers(0, 256, (3, 90, 90), dtype=np.uint8)
    found = lungs.lung_masks(StubModel(two_lungs(64)), images, size=200)
    assert found.masks.shape == (3, 200, 200) and found.masks.dtype == bool
    assert not found.flagged.any() and found.reasons == ["", "", ""]
    assert lungs.dice(found.masks[0], two_lungs(200)) > 0.975
    np.testing.assert_allclose(found.area_share, found.masks.mean(axis=(1, 2)))
    own_size = lungs.lung_masks(StubModel(two_lungs(64)), images)
    assert own_size.masks.shape == (3, 90, 90)
    blank = lungs.lung_masks(StubModel(None), images, size=128)
    assert blank.flagged.all() and all("area" in r for r in blank.reasons)
    stub = StubModel(two_lungs(64))
    lungs.lung_masks(stub, np.zeros((5, 64, 64), np.uint8), batch_size=2)
    assert [s[0] for s in stub.seen] == [2, 2, 1] and stub.seen[0][1:] == (64, 64, 1)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        lungs.lung_masks(stub, np.zeros((64, 64), np.uint8))


def test_the_panel_is_narrow_enough_readable_and_shows_flags():
    rng = np.random.default_rng(0)
    shown = {
        source: [(f"AP {k}", rng.integers(0, 256, (96, 96), dtype=np.uint8)) for k in range(4)]
        for source in ("radiography", "cohen", "figure1")
    }
    shown["actualmed"] = [("PA", np.zeros((96, 96), np.uint8))]  # fewer images than columns
    fig = lungs.mask_panel(StubModel(two_lungs(64)), shown)
    assert fig.get_size_inches()[0] <= lungs.FIGURE_WIDTH
    texts = [t for ax in fig.axes for t in (ax.title, ax.yaxis.label) if t.get_text()]
    assert min(t.get_fontsize() for t in texts) >= 8
    assert any(t.get_text() == "radiography" for t in texts)
    flagged = lungs.mask_panel(StubModel(None), {"x": [("AP", np.zeros((96, 96), np.uint8))]})
    assert "FLAGGED" in flagged.axes[0].get_title()


def test_panel_images_put_ap_films_first(tmp_path):
    rows = []
    for k, view in enumerate(["PA", "PA", "AP", "PA", "AP Supine", None]):
        Image.fromarray(np.full((40, 50), 10 * k, np.uint8)).save(tmp_path / f"{k}.png")
        rows.append({"source": "cohen", "path": f"{k}.png", "view": view})
    chosen = lungs.panel_images(pd.DataFrame(rows), tmp_path, per_source=4, size=32)
    captions = [c for c, _ in chosen["cohen"]]
    assert len(captions) == 4 and sorted(captions[:2]) == ["AP", "AP Supine"] and "view ?" not in captions[:2]
    assert all(im.shape == (32, 32) and im.dtype == np.uint8 for _, im in chosen["cohen"])


# --------------------------------------------------------------------------- data and cache


def test_held_back_split_is_seeded_per_source_and_by_share():
    names = [f"MCUCXR_{k:04d}_0.png" for k in range(40)] + [f"CHNCXR_{k:04d}_1.png" for k in range(160)]
    held = lungs.held_back_split(names, 0.15, seed=0)
    assert held[:40].sum() == 6 and held[40:].sum() == 24
    np.testing.assert_array_equal(held, lungs.held_back_split(names, 0.15, seed=0))
    assert not np.array_equal(held, lungs.held_back_split(names, 0.15, seed=1))
    with pytest.raises(ValueError):
        lungs.held_back_split(names, 1.0, seed=0)


def test_a_missing_mask_set_is_named(tmp_path):
    (tmp_path / "lung-masks" / "jsrt" / "images").mkdir(parents=True)
    with pytest.raises(lungs.LungMaskError, match=r"lung-masks/montgomery-shenzhen/images"):
        lungs.mask_folder(lungs.TRAIN_SET, tmp_path)
    with pytest.raises(lungs.LungMaskError, match=r"lung-masks/jsrt/images"):
        lungs.mask_folder(lungs.TEST_SET, tmp_path)


def test_cache_key_follows_settings_and_files():
    files = [("images/a.png", 10), ("masks/a.png", 3)]
    key = lungs.cache_key(UNetSettings(), files)
    assert len(key) == 16 and key == lungs.cache_key(UNetSettings(), list(files))
    assert key != lungs.cache_key(UNetSettings(seed=1), files)
    assert key != lungs.cache_key(UNetSettings(), [("images/a.png", 11), ("masks/a.png", 3)])
    assert key != lungs.cache_key(UNetSettings(), files[:1])


@pytest.fixture
def small_mask_root(mirror_root: Path, tmp_path: Path) -> Path:
    """A data root with 8 real Montgomery/Shenzhen pairs and 2 JSRT pairs."""
    src, root = mirror_root / lungs.MASK_SETS, tmp_path / "data"
    names = {lungs.TRAIN_SET: ["MCUCXR_0001_0.png", "MCUCXR_0002_0.png", "MCUCXR_0003_0.png", "MCUCXR_0004_0.png"]}
    names[lungs.TRAIN_SET] += ["CHNCXR_0001_0.png", "CHNCXR_0002_0.png", "CHNCXR_0003_0.png", "CHNCXR_0004_0.png"]
    names[lungs.TEST_SET] = ["JPCLN001.png", "JPCNN001.png"]
    for which, files in names.items():
        for part in ("images", "masks"):
            (root / lungs.MASK_SETS / which / part).mkdir(parents=True)
            for name in files:
                shutil.copy(src / which / part / name, root / lungs.MASK_SETS / which / part / name)
    return root


@pytest.mark.mirror
def test_real_masks_read_as_plausible_lungs(small_mask_root):
    jsrt = lungs.read_mask_set(lungs.TEST_SET, small_mask_root)
    train = lungs.read_mask_set(lungs.TRAIN_SET, small_mask_root, size=64)
    assert jsrt.images.shape == jsrt.masks.shape == (2, 224, 224) and jsrt.masks.dtype == bool
    assert train.images.shape == (8, 64, 64) and train.images.dtype == np.uint8
    for mask in (*jsrt.masks, *train.masks):
        assert lungs.implausible(mask) == ""


@pytest.mark.mirror
def test_provision_trains_once_writes_atomically_and_reuses(small_mask_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    failing = lungs.train_unet

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(lungs, "train_unet", broken)
    with pytest.raises(RuntimeError):
        lungs.provision(cache, TINY, small_mask_root)
    assert [p.name for p in (cache / "lungs").iterdir() if not p.name.endswith(".lock")] == []

    monkeypatch.setattr(lungs, "train_unet", failing)
    path = lungs.provision(cache, TINY, small_mask_root)
    assert path.parent == cache / "lungs" and path.suffix == ".keras" and path.is_file()
    record = lungs.training_record(path)
    assert record["epochs_run"] == 1 and record["train_images"] == 6 and len(record["held_back"]) == 2
    assert record["settings"]["size"] == 32 and record["policy"] == "float32"
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, f"{path.stem}.json", f"{path.stem}.lock"]
    )

    monkeypatch.setattr(lungs, "train_unet", broken)  # a second provision must not train
    assert lungs.provision(cache, TINY, small_mask_root) == path
    model = lungs.load_model(path)
    found = lungs.lung_masks(model, np.zeros((2, 50, 50), np.uint8), size=40)
    assert found.masks.shape == (2, 40, 40)
    other = UNetSettings(**{**TINY.as_dict(), "filters": TINY.filters, "seed": 1})
    with pytest.raises(RuntimeError):  # other settings: another key, so it trains
        lungs.provision(cache, other, small_mask_root)


# --------------------------------------------------------------------------- the real model


@pytest.fixture(scope="session")
def real_lung_model(mirror_root: Path):
    """The real model at the default settings, from the output root's cache (trained there once,
    about 2-3 minutes on 2 cores, when no build has provisioned it yet)."""
    return lungs.load_model(lungs.provision(config.cache_dir(), root=mirror_root))


@pytest.mark.slow
@pytest.mark.mirror
def test_dice_on_a_few_jsrt_images_is_above_the_floor(real_lung_model, mirror_root):
    jsrt = lungs.read_mask_set(lungs.TEST_SET, mirror_root)
    few = jsrt.subset(np.isin(jsrt.names, JSRT_FEW))
    assert len(few) == len(JSRT_FEW)
    found = lungs.lung_masks(real_lung_model, few.images)
    scores = lungs.dice(found.masks, few.masks)
    assert scores.mean() >= JSRT_DICE_FLOOR, dict(zip(few.names, scores.round(3)))
    assert scores.min() >= JSRT_IMAGE_FLOOR, dict(zip(few.names, scores.round(3)))
    rectangle = lungs.dice(np.broadcast_to(central_lung_mask(224), few.masks.shape), few.masks)
    assert (scores > rectangle).all()
    assert not found.flagged.any(), found.reasons


@pytest.mark.slow
@pytest.mark.mirror
def test_non_chest_images_are_flagged(real_lung_model):
    side = 224
    rows, cols = np.mgrid[:side, :side]
    rng = np.random.default_rng(0)
    made = {
        "black": np.zeros((side, side)),
        "grey": np.full((side, side), 128),
        "white": np.full((side, side), 255),
        "checkerboard": ((rows // 28 + cols // 28) % 2) * 255,
        "noise": rng.integers(0, 256, (side, side)),
        "gradient": np.broadcast_to(np.linspace(0, 255, side), (side, side)),
        "disc": (((rows - 112) ** 2 + (cols - 112) ** 2) < 80**2) * 200,
    }
    found = lungs.lung_masks(real_lung_model, np.stack(list(made.values())).astype(np.uint8))
    assert found.flagged.all(), dict(zip(made, found.reasons))
