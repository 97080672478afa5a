"""Collect completed runs into tables (the study's Table 1 columns and ours)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import config, results

TABLE1_COLUMNS = [
    "run", "study_run", "profile", "execution_minutes", "minutes_per_epoch", "accuracy", "val_accuracy",
    "auc", "val_auc", "loss", "val_loss", "input_size", "filter", "batch_size", "activation_output",
    "epochs", "optimizer", "learning_rate", "best_epoch", "params_total", "degenerate", "warnings",
]


def completed_runs(notebook: str, out: str | Path | None = None) -> list[dict]:
    """Every ``result.json`` under ``<out>/<notebook>/`` whose status is complete, by run name."""
    base = Path(out) if out else config.output_root()
    folders = sorted(p for p in (base / Path(notebook).stem).glob("*") if p.is_dir() and not p.name.endswith(".previous"))
    return [results.read_result(f) for f in folders if results.is_complete(f)]


def runs_table(notebook: str, out: str | Path | None = None) -> pd.DataFrame:
    """One row per completed run with the study's Table 1 columns (effective values)."""
    rows = []
    for result in completed_runs(notebook, out):
        effective, metrics = result["effective"], result.get("metrics", {})
        train, val = metrics.get("train", {}), metrics.get("val", {})
        rows.append({
            "run": result["run"], "study_run": effective.get("study_run"), "profile": result["profile"],
            "execution_minutes": result.get("execution_minutes"), "minutes_per_epoch": result.get("minutes_per_epoch"),
            "accuracy": train.get("accuracy"), "val_accuracy": val.get("accuracy"),
            "auc": train.get("auc"), "val_auc": val.get("auc"),
            "loss": train.get("loss"), "val_loss": val.get("loss"),
            **{k: effective.get(k) for k in ("input_size", "filter", "batch_size", "activation_output",
                                               "epochs", "optimizer", "learning_rate")},
            "best_epoch": result.get("best_epoch"), "params_total": result.get("params_total"),
            "degenerate": bool(result.get("degenerate")), "warnings": len(result.get("warnings", [])),
        })
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)
