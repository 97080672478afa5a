"""Successive halving on the screening grid: the leaders get more seeds, the choice is on the mean,
and how often a one-seed draw would have chosen each leader says whether the choice is clear."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_report import fake_run

from cxr_utils import config, results
from cxr_utils.reporting import collect
from cxr_utils.runs import halving, runner


def planted_grid(rng: np.random.Generator, seeds: int = 3) -> pd.DataFrame:
    """A screening table: one clearly better configuration (true val AUC 0.92), three close ones
    (0.78, 0.775, 0.77) whose seed noise (sd 0.03) is larger than their gaps, and a degenerate one
    that scores best of all; every configuration with ``seeds`` seeds."""
    truths = {"best": 0.92, "close_a": 0.78, "close_b": 0.775, "close_c": 0.77, "broken": 0.97}
    rows = []
    for name, truth in truths.items():
        for k in range(1, seeds + 1):
            run = name if k == 1 else f"{name}_seed{k}"
            noise = 0.01 if name == "best" else 0.03
            rows.append(
                {
                    "kind": "custom",
                    "run": run,
                    "configuration": name,
                    "role": "screening",
                    "seed": k,
                    "val_auc": float(np.clip(truth + rng.normal(0, noise), 0, 1)),
                    "degenerate": name == "broken",
                    "learned": True,
                    "did_not_learn": None,
                    "fine_tune_layers": None,
                }
            )
    return pd.DataFrame(rows)


def test_halving_keeps_the_clearly_better_run_and_calls_the_close_ones_noise():
    rng = np.random.default_rng(20201125)
    for _ in range(50):
        table = planted_grid(rng)
        assert collect.choose_on_val(table, "custom") == collect.RunKey("custom", "best")
        stability = collect.choice_stability(table, "custom").set_index("configuration")
        assert stability.loc["best", "chosen"] and stability.loc["best", "verdict"] == "clear"
        assert "broken" not in stability.index  # degenerate: never a candidate, however high it scores
        close = table[table["configuration"] != "best"]
        noisy = collect.choice_stability(close, "custom")
        assert noisy["share_chosen"].sum() == pytest.approx(1.0)
        assert (noisy["share_chosen"] > 0).sum() >= 2  # more than one close configuration wins some draws
    # over many draws the close ones are within noise: the chosen one loses a real share of draws
    verdicts = [collect.choice_stability(planted_grid(rng)[lambda t: t["configuration"] != "best"], "custom")
                ["verdict"].iloc[0] for _ in range(50)]  # fmt: skip
    assert verdicts.count("within noise") >= 40


def test_the_per_seed_table_has_one_row_per_run_and_seed():
    table = planted_grid(np.random.default_rng(1))
    seeds = collect.seed_table(table, "custom")
    assert len(seeds) == len(table) == 15 and not seeds.duplicated(["configuration", "seed"]).any()
    means = table.groupby("configuration")["val_auc"].mean()
    assert np.allclose(seeds["mean_val_auc"], seeds["configuration"].map(means))


def test_only_the_leaders_are_reseeded_ties_included():
    rows = [("a", 0.90), ("b", 0.85), ("c", 0.85), ("d", 0.80), ("e", 0.70)]
    table = pd.DataFrame(
        [
            {"kind": "custom", "run": r, "configuration": r, "role": "screening", "seed": 1, "val_auc": v,
             "degenerate": False, "learned": True, "did_not_learn": None, "fine_tune_layers": None}
            for r, v in rows
        ]
    )  # fmt: skip
    assert collect.leaders(table, "custom", 2) == ["a", "b", "c"]  # b and c tie at the cut
    assert collect.leaders(table, "custom", 10) == ["a", "b", "c", "d", "e"]
    # with one seed each the rule is the plain highest val AUC
    assert collect.choose_on_val(table, "custom").run == "a"


def test_extra_seeds_are_ordinary_runs_a_resumed_build_does_not_redo(tmp_path):
    for name, auc in (("run02", 0.80), ("run04", 0.84), ("run05", 0.60), ("run07", 0.83)):
        fake_run(tmp_path, "02_custom_cnn", name, val_auc=auc, epoch0_val_auc=0.5)
    fake_run(tmp_path, "02_custom_cnn", "run09", val_auc=0.99, epoch0_val_auc=0.5, degenerate=True)
    files = halving.write_params("custom", "default", tmp_path)
    assert config.screening_seed_settings("default") == {"top": 4, "seeds": 3}
    # the top 4 eligible (the degenerate run09 is not), seeds 2 and 3 each
    assert sorted(p.stem for p in files) == sorted(
        f"{r}_seed{k}" for r in ("run02", "run04", "run05", "run07") for k in (2, 3)
    )
    params = config.load_params_file(files[0])
    assert params["screened_as"] == files[0].stem.split("_seed")[0] and params["role"] == "screening"
    assert params["seed"] == 7 + int(files[0].stem[-1]) - 1
    again = halving.write_params("custom", "default", tmp_path)
    assert [p.read_text() for p in again] == [p.read_text() for p in files]  # the same runs, the same params
    seed_folder = fake_run(tmp_path, "02_custom_cnn", "run04_seed2", val_auc=0.82, **params)
    record = results.read_result(seed_folder)
    record["requested"] = {**config.load_params_file(tmp_path / "screening_seeds" / "custom" / "run04_seed2.yaml"),
                           "run_name": "run04_seed2", "profile": "default", "output_dir": str(seed_folder)}  # fmt: skip
    results.write_json(seed_folder / results.RESULT_FILE, record)
    planned = config.load_params_file(tmp_path / "screening_seeds" / "custom" / "run04_seed2.yaml")
    assert runner.done_before(seed_folder, "run04_seed2", planned, "default", force=False) is not None
    assert config.screening_seed_settings("smoke")["seeds"] == 1
    assert halving.write_params("custom", "smoke", tmp_path) == []  # the smoke profile runs one seed


def test_the_choice_is_on_the_mean_not_on_a_lucky_first_seed():
    seeds = {"lucky": [0.85, 0.70, 0.70], "steady": [0.80, 0.80, 0.79], "dropped": [0.60]}
    table = pd.DataFrame(
        [
            {"kind": "custom", "run": name if k == 0 else f"{name}_seed{k + 1}", "configuration": name,
             "role": "screening", "seed": k + 1, "val_auc": v, "degenerate": False, "learned": True,
             "did_not_learn": None, "fine_tune_layers": None}
            for name, values in seeds.items() for k, v in enumerate(values)
        ]
    )  # fmt: skip
    assert collect.choose_on_val(table, "custom").run == "steady"  # one seed would have chosen "lucky"
    stability = collect.choice_stability(table, "custom").set_index("configuration")
    assert list(stability.index) == ["lucky", "steady"]  # "dropped" was not a leader: it has one seed
    assert stability.loc["lucky", "share_chosen"] == pytest.approx(1 / 3)  # its 0.85 wins every draw it is in
    assert stability.loc["steady", "verdict"] == "within noise"


def test_win_shares_equal_the_enumerated_draws_ties_included_without_listing_them():
    import itertools

    rng = np.random.default_rng(5)
    for _ in range(100):
        groups = [np.round(rng.uniform(0.5, 1, rng.integers(1, 4)), 1) for _ in range(rng.integers(2, 5))]
        wins = np.zeros(len(groups))
        draws = list(itertools.product(*groups))
        for draw in draws:
            best = [k for k, value in enumerate(draw) if value == max(draw)]
            wins[best] += 1 / len(best)
        assert np.allclose(collect.win_shares(groups), wins / len(draws))
    many = [np.linspace(0.7, 0.8, 5) + k * 1e-3 for k in range(14)]  # 5**14 draws: never listed
    assert sum(collect.win_shares(many)) == pytest.approx(1.0)


def test_a_leader_whose_extra_seed_failed_still_competes_on_the_seeds_it_has():
    rows = [("a", 1, 0.90), ("a_seed2", 2, 0.90), ("b", 1, 0.80), ("b_seed2", 2, 0.80), ("b_seed3", 3, 0.80)]
    table = pd.DataFrame(
        [
            {"kind": "custom", "run": run, "configuration": run.split("_seed")[0], "role": "screening", "seed": seed,
             "val_auc": value, "degenerate": False, "learned": True, "did_not_learn": None, "fine_tune_layers": None}
            for run, seed, value in rows
        ]
    )  # fmt: skip
    assert collect.choose_on_val(table, "custom").run == "a"  # a_seed3 failed: a competes on two seeds


def test_extra_seeds_no_longer_in_the_plan_are_set_aside(tmp_path):
    for name, auc in (("run02", 0.80), ("run04", 0.84)):
        fake_run(tmp_path, "02_custom_cnn", name, val_auc=auc, epoch0_val_auc=0.5)
    stale = fake_run(tmp_path, "02_custom_cnn", "run07_seed2", val_auc=0.99, epoch0_val_auc=0.5)
    record = results.read_result(stale)
    results.write_json(stale / results.RESULT_FILE, {**record, "screened_as": "run07"})  # an earlier build's leader
    files = halving.write_params("custom", "default", tmp_path)
    assert sorted(p.stem for p in files) == ["run02_seed2", "run02_seed3", "run04_seed2", "run04_seed3"]
    assert not stale.exists() and (tmp_path / "02_custom_cnn" / "run07_seed2.previous").is_dir()
    table = collect.runs_table(profile="default", out=tmp_path, role="screening")
    assert "run07" not in set(table["configuration"])  # it never counts in a mean again
