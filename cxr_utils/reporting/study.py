"""The original study's Table 1 (runs 1-19), kept as data to compare against and cite."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TABLE1_FILE = Path(__file__).parent.parent / "resources" / "study_table1.csv"
SOURCE = "Lopes, Costa, Pereira: Image Classification for COVID-19 Chest X-Ray Diagnosis (NOVA IMS), Table 1"


def table1() -> pd.DataFrame:
    """Every run of the study's Table 1 with its parameters and reported numbers."""
    return pd.read_csv(TABLE1_FILE, dtype={"filter": "Int64"})


def table1_row(run: int) -> dict:
    """One run of Table 1 as a dict (KeyError naming the run if absent)."""
    table = table1()
    row = table[table["run"] == run]
    if row.empty:
        raise KeyError(f"run {run} is not in the study's Table 1 (runs {table['run'].min()}-{table['run'].max()})")
    return {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.iloc[0].items()}


def side_by_side(ours: pd.DataFrame, final: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our runs that have a study counterpart, next to the study's Table 1 numbers, each beside
    its fair counterpart: the study reported the last epoch of one seed, so "last" columns are
    our last epoch; "kept" is our best-val epoch; "final fits" is the mean val AUC of the final
    fits (every training image, several seeds) of a configuration that was chosen (``final``:
    rows of the runs table with ``screened_as``), the counterpart of the study's chosen runs."""
    table = table1().set_index("run")
    finals = final.groupby("screened_as")["val_auc"].mean() if final is not None and len(final) else pd.Series()
    rows = []
    for row in ours[ours["study_run"].notna()].itertuples():
        theirs = table.loc[int(row.study_run)]
        rows.append(
            {
                "run": row.run,
                "study_run": int(row.study_run),
                "model": row.model,
                "size (study / ours)": f"{theirs['image_size']} / {row.size}",
                "epochs (study / ours)": f"{theirs['epochs']} / {row.epochs}",
                "val_acc study (last)": theirs["val_acc"],
                "val_acc ours (last)": row.last_val_accuracy,
                "val_auc study (last)": theirs["val_auc"],
                "val_auc ours (last)": row.last_val_auc,
                "val_auc ours (kept)": row.val_auc,
                "val_auc ours (final fits)": finals.get(row.run, float("nan")),
                "min/epoch study (GPU)": theirs["minutes_per_epoch"],
                "min/epoch ours (CPU)": row.minutes_per_epoch,
            }
        )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


COMPARISON_COLUMNS = [
    "run",
    "study_run",
    "model",
    "size (study / ours)",
    "epochs (study / ours)",
    "val_acc study (last)",
    "val_acc ours (last)",
    "val_auc study (last)",
    "val_auc ours (last)",
    "val_auc ours (kept)",
    "val_auc ours (final fits)",
    "min/epoch study (GPU)",
    "min/epoch ours (CPU)",
]
