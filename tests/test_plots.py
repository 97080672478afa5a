"""Every figure function: a non-empty PNG of about its declared size for real inputs, and a clear
error for an empty input."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_utils.analysis import evaluation, heldout
from cxr_utils.reporting import collect, plots

DPI = 120  # plots._save


def check_png(fig: plt.Figure, path) -> None:
    """The file exists, has content (not one flat colour) and about the figure's size in pixels
    (saved with a tight bounding box, so within a margin of figsize x dpi)."""
    expected_w, expected_h = fig.get_size_inches() * DPI
    plt.close(fig)
    with Image.open(path) as img:
        width, height = img.size
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert 0.6 * expected_w <= width <= 1.5 * expected_w, (path.name, width, expected_w)
    assert 0.6 * expected_h <= height <= 1.5 * expected_h, (path.name, height, expected_h)
    assert pixels.std() > 5, f"{path.name} is blank"


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """A real history: a tiny model trained for three epochs."""
    import keras

    from cxr_utils.modeling import training

    training.seed_everything(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), (rng.random(64) > 0.5).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy", keras.metrics.AUC(name="auc")])
    fit = model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0)
    return pd.DataFrame(fit.history).assign(epoch=[1, 2, 3])


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(1)
    y = (rng.random(300) > 0.5).astype(int)
    return y, np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1), np.arange(300) // 2


def test_manifest_figures(mirror_build, mirror_root, tmp_path):
    m = mirror_build.manifest
    for name, draw in {
        "counts": lambda p: plots.counts_by_source(m, path=p),
        "splits": lambda p: plots.split_sizes(m, path=p),
        "grid": lambda p: plots.sample_grid(m, mirror_root, per_cell=2, path=p),
        "pairs": lambda p: plots.duplicate_pairs(mirror_build.duplicate_pairs, mirror_root, n=2, path=p),
    }.items():
        check_png(draw(tmp_path / f"{name}.png"), tmp_path / f"{name}.png")


def test_training_figures(history, tmp_path):
    from test_halving import planted_grid

    grid = planted_grid(np.random.default_rng(0))
    seeds, stability = collect.seed_table(grid, "custom"), collect.choice_stability(grid, "custom")
    table = pd.DataFrame(
        {
            "kind": ["custom", "custom", "custom"],
            "run": ["run01", "run02", "run03"],
            "role": "screening",
            "val_auc": [0.8, 0.5, 0.6],
            "epoch0_val_auc": [0.65, 0.5, 0.62],
            "learned": [True, False, False],
            "degenerate": [False, True, False],
        }
    )
    for name, draw in {
        "curves": lambda p: plots.training_curves(history, "a run", best_epoch=2, path=p),
        "grid": lambda p: plots.val_auc_by_run(table, {"run01": 0.9}, path=p),
        "gap": lambda p: plots.overfitting_panel({"a": history, "b": history.assign(accuracy=0.9)}, path=p),
        "phases": lambda p: plots.phased_curves(history, history, "head then fine-tuning", (2, 1), path=p),
        "finals": lambda p: plots.final_fit_curves(
            {"custom run01": [("final_run01_seed1", history, 2, 10), ("final_run01_seed2", history, 1, len(history))]},
            path=p,
        ),
        "seeds": lambda p: plots.seed_points(seeds, stability, "custom: screening val AUC per seed", path=p),
    }.items():
        check_png(draw(tmp_path / f"{name}.png"), tmp_path / f"{name}.png")


def test_evaluation_figures(scores, tmp_path):
    y, s, g = scores
    curve = heldout.band_curves(y, s, g, {"value": 0.8, "low": 0.7, "high": 0.9}, n_boot=50, seed=0)
    predictions = pd.DataFrame(
        {"y": y, "score": s, "group_id": g, "source": np.where(np.arange(len(y)) < 280, "radiography", "figure1")}
    )
    per_source = evaluation.auc_by_source(predictions, n_boot=50, seed=0).assign(model="m")
    assert per_source.set_index("source").loc["figure1", "note"].startswith("too few")
    for name, draw in {
        "roc": lambda p: plots.roc_pr_bands({"m": curve}, "test", path=p),
        "confusion": lambda p: plots.confusion_grid({"m": evaluation.confusion(y, s)}, path=p),
        "one_confusion": lambda p: plots.confusion_matrix(evaluation.confusion(y, s), "m", path=p),
        "calibration": lambda p: plots.calibration_curves({"m": evaluation.calibration(y, s)}, "test", path=p),
        "per_source": lambda p: plots.per_source(per_source, "test", path=p),
    }.items():
        check_png(draw(tmp_path / f"{name}.png"), tmp_path / f"{name}.png")


@pytest.mark.parametrize(
    "draw",
    [
        lambda: plots.counts_by_source(pd.DataFrame(columns=["source", "label"])),
        lambda: plots.split_sizes(pd.DataFrame(columns=["split", "label"])),
        lambda: plots.sample_grid(pd.DataFrame(columns=["source", "label", "path", "image_id"]), "."),
        lambda: plots.training_curves(pd.DataFrame(), "empty"),
        lambda: plots.val_auc_by_run(
            pd.DataFrame({"kind": [], "run": [], "role": [], "val_auc": [], "degenerate": []})
        ),
        lambda: plots.overfitting_panel({}),
        lambda: plots.roc_pr_bands({}, "test"),
        lambda: plots.confusion_grid({}),
        lambda: plots.calibration_curves({}, "test"),
        lambda: plots.per_source(pd.DataFrame(columns=["model", "source", "auc", "low", "high"]), "test"),
        lambda: plots.phased_curves(pd.DataFrame(), pd.DataFrame(), "empty", (1, 1)),
        lambda: plots.final_fit_curves({}),
        lambda: plots.seed_points(pd.DataFrame(), pd.DataFrame(), "empty"),
    ],
)
def test_an_empty_input_is_a_clear_error(draw):
    with pytest.raises(ValueError, match="nothing to draw: .* is empty"):
        draw()


def test_no_duplicate_pairs_is_drawn_as_such(tmp_path):
    fig = plots.duplicate_pairs(pd.DataFrame(columns=["cross_source", "distance"]), ".", path=tmp_path / "none.png")
    assert "no duplicate pairs found" in [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)


def test_a_label_too_small_to_read_in_print_is_an_error_and_no_file(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("tiny", fontsize=5)
    with pytest.raises(ValueError, match=r"tiny.png: 'tiny' would print at 6.2 pt \(at least 7 pt\)"):
        plots._save(fig, tmp_path / "tiny.png")  # 5 pt shown at 1.25 times (120 dpi at 96 px per inch)
    assert not (tmp_path / "tiny.png").exists()
    ax.set_title("small", fontsize=6)
    plots._save(fig, tmp_path / "small.png")  # 7.5 pt in print
    assert (tmp_path / "small.png").is_file() and plots.print_scale(fig) == pytest.approx(1.25)
    plt.close(fig)


def test_a_figure_wider_than_the_page_prints_smaller_and_can_fail(tmp_path):
    fig, ax = plt.subplots(figsize=(14, 3))
    ax.set_title("wide", fontsize=9)
    assert 0.5 < plots.print_scale(fig) < 188 / 25.4 / 11  # its tight box (at least 11 in) to 188 mm
    with pytest.raises(ValueError, match=r"'wide' would print at [45]\.\d pt"):
        plots._save(fig, tmp_path / "wide.png")
    plt.close(fig)
