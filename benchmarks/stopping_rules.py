"""Stopping rules replayed on full training histories: when would each have stopped, and what
would it have kept?

    .venv/bin/python benchmarks/stopping_rules.py RUN_FOLDER [RUN_FOLDER ...] [--rules 4 10 s4]

Each run folder holds the history of a fit (``history.csv``, or its head's or fine-tuning's)
trained to its epoch cap with no early stopping (``early_stopping_patience: null``). For each
rule the script replays the val AUC epoch by epoch and prints the epoch it stops at, the epoch it
keeps (the best raw val AUC so far, the first of ties, as ``training.fit`` keeps it), the kept
val AUC, how far that lies below the best of the whole history (regret), and whether a better
epoch came later. Rules: ``N`` stops once the raw val AUC has not improved for N epochs (Keras'
EarlyStopping, as the profiles' ``early_stopping_patience`` does); ``sN`` does the same on the
val AUC smoothed over the last 3 epochs, so that one noisy epoch can neither end training nor
reset the count. A script, not a test: the numbers are one data set's, state them with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cxr_utils.reporting.collect import history_file  # noqa: E402

WINDOW = 3  # epochs in the smoothed val AUC


def stop_epoch(values: np.ndarray, patience: int) -> int:
    """The (1-based) epoch after which training stops: ``patience`` epochs without a new best."""
    best, best_at = -np.inf, 0
    for k, value in enumerate(values):
        if value > best:
            best, best_at = value, k
        elif k - best_at >= patience:
            return k + 1
    return len(values)


def replay(history: pd.DataFrame, rule: str) -> dict:
    """What one rule does on one history."""
    raw = history["val_auc"].to_numpy(dtype=float)
    smoothed = rule.startswith("s")
    patience = int(rule.lstrip("s"))
    watched = pd.Series(raw).rolling(WINDOW, min_periods=1).mean().to_numpy() if smoothed else raw
    stop = stop_epoch(watched, patience)
    kept = int(np.argmax(raw[:stop]))  # first of ties
    return {
        "rule": f"smoothed over {WINDOW}, patience {patience}" if smoothed else f"patience {patience}",
        "stopped_at": stop,
        "kept_epoch": kept + 1,
        "kept_val_auc": raw[kept],
        "regret": raw.max() - raw[kept],
        "better_later": bool(raw[stop:].max() > raw[kept]) if stop < len(raw) else False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--rules", nargs="+", default=["4", "10", "s4", "s10"])
    args = parser.parse_args()
    rows = []
    for folder in args.folders:
        history = pd.read_csv(history_file(folder))
        best = int(history["val_auc"].idxmax())
        print(
            f"{folder.name}: {len(history)} epochs; best val AUC {history['val_auc'].max():.3f} at epoch {best + 1}; "
            f"last {history['val_auc'].iloc[-1]:.3f}; {history['seconds'].median():.1f} s per epoch"
        )
        rows += [{"run": folder.name, **replay(history, rule)} for rule in args.rules]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(table.groupby("rule")[["stopped_at", "regret"]].mean().round(3).to_string())


if __name__ == "__main__":
    main()
