"""Collect runs into tables, choose models on val, score them on held-out splits, export the report."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from . import config, results

TRAINING_NOTEBOOKS = {"custom": "02_custom_cnn", "transfer": "03_transfer_learning"}
TABLE_COLUMNS = [
    "kind", "run", "study_run", "model", "weights", "profile", "size", "epochs", "execution_minutes",
    "minutes_per_epoch", "accuracy", "val_accuracy", "auc", "val_auc", "loss", "val_loss", "filter",
    "batch_size", "activation_output", "optimizer", "learning_rate", "best_epoch", "params_total",
    "params_trainable", "degenerate", "commit",
]


def run_folders(notebook: str, out: str | Path | None = None) -> list[Path]:
    """Run folders of a notebook (set-aside ``.previous`` folders excluded)."""
    base = Path(out) if out else config.output_root()
    return sorted(p for p in (base / notebook).glob("*") if p.is_dir() and not p.name.endswith(".previous"))


def completed_runs(notebook: str, out: str | Path | None = None, include_smoke: bool = False) -> list[dict]:
    """Every complete ``result.json`` of a notebook, each with its ``folder`` added."""
    found = []
    for folder in run_folders(notebook, out):
        result = results.read_result(folder)
        if results.is_complete(folder) and (include_smoke or result.get("profile") != "smoke"):
            found.append({**result, "folder": str(folder)})
    return found


def not_run(out: str | Path | None = None) -> pd.DataFrame:
    """Runs of the training notebooks that did not complete, with their status."""
    rows = []
    for kind, notebook in TRAINING_NOTEBOOKS.items():
        for folder in run_folders(notebook, out):
            result = results.read_result(folder) or {"status": "no result.json"}
            if result.get("status") != "complete":
                rows.append({"kind": kind, "run": folder.name, "status": result.get("status", "")[:200]})
    return pd.DataFrame(rows, columns=["kind", "run", "status"])


def _row(kind: str, result: dict) -> dict:
    effective, metrics = result["effective"], result.get("metrics", {})
    train, val = metrics.get("train", {}), metrics.get("val", {})
    weights = result.get("weights")
    return {
        "kind": kind, "run": result["run"], "study_run": effective.get("study_run"),
        "model": effective.get("backbone", "custom CNN"),
        "weights": weights.get("label") if isinstance(weights, dict) else "from scratch",
        "profile": result["profile"], "size": effective.get("input_size", effective.get("image_size")),
        "epochs": effective.get("epochs"), "execution_minutes": result.get("execution_minutes"),
        "minutes_per_epoch": result.get("minutes_per_epoch"),
        "accuracy": train.get("accuracy"), "val_accuracy": val.get("accuracy"),
        "auc": train.get("auc"), "val_auc": val.get("auc"), "loss": train.get("loss"), "val_loss": val.get("loss"),
        "filter": effective.get("filter"), "batch_size": effective.get("batch_size"),
        "activation_output": effective.get("activation_output", "softmax (2 units)"),
        "optimizer": effective.get("optimizer", "adam"), "learning_rate": effective.get("learning_rate"),
        "best_epoch": result.get("best_epoch"), "params_total": result.get("params_total"),
        "params_trainable": result.get("params_trainable"), "degenerate": bool(result.get("degenerate")),
        "commit": result.get("provenance", {}).get("git_commit", "")[:12],
    }


def runs_table(profile: str | None = None, out: str | Path | None = None) -> pd.DataFrame:
    """One row per completed custom and transfer run (the study's Table 1 columns and more)."""
    rows = [
        _row(kind, result)
        for kind, notebook in TRAINING_NOTEBOOKS.items()
        for result in completed_runs(notebook, out, include_smoke=profile == "smoke")
        if profile is None or result["profile"] == profile
    ]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def choose_on_val(table: pd.DataFrame, kind: str) -> str | None:
    """The run of ``kind`` with the highest val AUC, degenerate runs excluded (first name on ties)."""
    candidates = table[(table["kind"] == kind) & ~table["degenerate"] & table["val_auc"].notna()]
    if candidates.empty:
        return None
    return str(candidates.sort_values(["val_auc", "run"], ascending=[False, True]).iloc[0]["run"])


def load_run_model(result: dict):
    """The saved best model of a run (transfer models need their preprocessing layer)."""
    import keras

    from . import backbones

    path = Path(result["folder"]) / "model.keras"
    return backbones.load_model(path) if result["kind"] == "transfer" else keras.saving.load_model(path)


def score_split(result: dict, manifest: pd.DataFrame, split: str, root: Path, model=None):
    """Scores (probability of COVID) of a run's model on every readable image of one split.

    Returns (y, scores, rows, failures): ``failures`` lists the images that could not be read.
    """
    from . import datasets, training

    effective = result["effective"]
    size = effective.get("input_size", effective.get("image_size"))
    arrays = datasets.load_split(manifest, split, size, root=root)
    model = model or load_run_model(result)
    data = datasets.make_dataset(arrays, batch_size=32, channels=effective.get("channels", 3))
    return arrays.y, training.predict(model, data), arrays.rows, arrays.failures


def to_markdown(table: pd.DataFrame, path: Path, floatfmt: str = ".3f") -> None:
    """Write a table as Markdown (and CSV beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path.with_suffix(".csv"), index=False)
    path.with_suffix(".md").write_text(table.to_markdown(index=False, floatfmt=floatfmt) + "\n")


# --------------------------------------------------------------------------- HTML export

SELF_CHECK = """
<script>
// Self-check used by the render test: how many images loaded, how many sections have content.
window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", ok + "/" + imgs.length);
});
</script>
"""


def export_html(executed_notebook: str | Path, report_dir: str | Path, figures: list[Path] = (),
                tables: list[Path] = ()) -> Path:
    """The executed report notebook as ``report.html`` without code, plus figures/ and tables/."""
    from nbconvert import HTMLExporter
    import nbformat

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    from traitlets.config import Config

    settings = Config()
    settings.TagRemovePreprocessor.remove_cell_tags = {"remove_cell"}
    settings.TagRemovePreprocessor.enabled = True
    exporter = HTMLExporter(config=settings, exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(nbformat.read(str(executed_notebook), as_version=4))
    html = html.replace("</body>", SELF_CHECK + "</body>")
    target = report_dir / "report.html"
    target.write_text(html)
    for sub, files in (("figures", figures), ("tables", tables)):
        folder = report_dir / sub
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for path in files:
            shutil.copy2(path, folder / Path(path).name)
    return target


# --------------------------------------------------------------------------- held-out evaluation


def evaluate_chosen(result: dict, manifest: pd.DataFrame, root: Path, *, n_boot: int = 1000,
                    seed: int = 0) -> dict:
    """Score a model chosen on val: the threshold from val, then test and external once each.

    Returns ``predictions`` (image_id, source, group_id, split, y, score), ``failures`` (images
    that could not be read, with the split), ``threshold``,
    ``metrics`` {split: {"0.5": CIs, "val_threshold": CIs}}, ``curves`` {split: ROC/PR bands}
    (splits with both labels only), ``calibration`` {split: (mean, rate, count, brier)} and
    ``per_source`` (test AUC and accuracy per source with intervals).
    """
    from . import evaluation

    model = load_run_model(result)
    frames, failed = [], []
    for split in ("val", "test", "external"):
        if not (manifest["split"] == split).any():
            continue
        y, scores, rows, failures = score_split(result, manifest, split, root, model=model)
        frames.append(rows[["image_id", "source", "group_id", "split"]].assign(y=y, score=scores))
        failed.append(failures.assign(split=split))
    predictions = pd.concat(frames, ignore_index=True)
    val = predictions[predictions["split"] == "val"]
    threshold = evaluation.youden_threshold(val["y"], val["score"]) if val["y"].nunique() == 2 else 0.5
    out = {"predictions": predictions, "failures": pd.concat(failed, ignore_index=True), "threshold": threshold,
           "metrics": {}, "curves": {}, "calibration": {}}
    for split in ("test", "external"):
        part = predictions[predictions["split"] == split]
        if part.empty:
            continue
        y, s, g = part["y"].to_numpy(), part["score"].to_numpy(), part["group_id"].to_numpy()
        out["metrics"][split] = evaluation.bootstrap_thresholds(
            y, s, g, {"0.5": 0.5, "val_threshold": threshold}, n_boot=n_boot, seed=seed)
        out["calibration"][split] = evaluation.calibration(y, s)
        if len(np.unique(y)) == 2:
            fpr, tpr, tlow, thigh = evaluation.roc_band(y, s, g, n_boot=n_boot, seed=seed)
            recall, precision, plow, phigh = evaluation.pr_band(y, s, g, n_boot=n_boot, seed=seed)
            auc = out["metrics"][split]["0.5"]["auc"]
            out["curves"][split] = {"fpr": fpr, "tpr": tpr, "tpr_low": tlow, "tpr_high": thigh, "recall": recall,
                                    "precision": precision, "precision_low": plow, "precision_high": phigh,
                                    "auc": auc["value"], "auc_low": auc["low"], "auc_high": auc["high"]}
    test = predictions[predictions["split"] == "test"]
    rows = []
    for source, part in test.groupby("source"):
        ci = evaluation.bootstrap_metrics(part["y"], part["score"], part["group_id"], threshold, n_boot=n_boot, seed=seed)
        for metric in ("auc", "accuracy"):
            rows.append({"source": source, "metric": metric, "n": len(part), "covid": int(part["y"].sum()), **ci[metric]})
    out["per_source"] = pd.DataFrame(rows)
    return out


def metrics_rows(model: str, evaluated: dict) -> list[dict]:
    """Flatten :func:`evaluate_chosen`'s intervals: one row per split, threshold and metric."""
    rows = []
    for split, by_threshold in evaluated["metrics"].items():
        for threshold_name, metrics in by_threshold.items():
            threshold = 0.5 if threshold_name == "0.5" else evaluated["threshold"]
            for metric, ci in metrics.items():
                if metric == "n":
                    continue
                rows.append({"model": model, "split": split, "threshold": round(threshold, 4), "metric": metric,
                             "value": ci["value"], "low": ci["low"], "high": ci["high"], "n": metrics["n"]["value"]})
    return rows


def history_file(result_folder: str | Path) -> Path:
    """The history of the epochs that produced a run's saved model (fine-tuning, head, or plain)."""
    folder = Path(result_folder)
    for candidate in ("finetune/history.csv", "head/history.csv", "history.csv"):
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(f"no history.csv under {folder}")


def load_histories(table: pd.DataFrame, out: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Histories keyed "<kind>: <run>" for every run in the table."""
    base = Path(out) if out else config.output_root()
    return {f"{row.kind}: {row.run}": pd.read_csv(history_file(base / TRAINING_NOTEBOOKS[row.kind] / row.run))
            for row in table.itertuples()}


def write_predictions(evaluated: dict[str, dict], folder: Path) -> None:
    """The chosen models' scores, one CSV per model."""
    folder.mkdir(parents=True, exist_ok=True)
    for model, ev in evaluated.items():
        ev["predictions"].to_csv(folder / f"{model.replace(': ', '_')}.csv", index=False)


# --------------------------------------------------------------------------- report notebook helpers


def with_intervals(heldout: pd.DataFrame) -> pd.DataFrame:
    """Held-out metrics as "value [low, high]" strings: rows model/split/threshold, columns metric."""
    cells = heldout.assign(text=[f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if pd.notna(v) else "n/a"
                                 for v, lo, hi in zip(heldout["value"], heldout["low"], heldout["high"])])
    table = cells.pivot_table(index=["model", "split", "threshold", "n"], columns="metric", values="text",
                              aggfunc="first")
    return table[[m for m in ("auc", "accuracy", "sensitivity", "specificity", "f1") if m in table.columns]].reset_index()


def plain(table: pd.DataFrame, precision: int = 3):
    """A table for the report: no index column, floats rounded, whole numbers without decimals."""
    table = table.copy()
    small = []
    for column in table.columns:
        values = table[column]
        if values.dtype.kind == "f" and values.dropna().apply(float.is_integer).all():
            table[column] = values.astype("Int64")
        elif values.dtype.kind == "f" and 0 < values.abs().max() < 10 ** -precision * 10:
            small.append(column)  # learning rates and the like: 0.0001, not 0.000
    styled = table.style.hide(axis="index").format(precision=precision, na_rep="")
    return styled.format("{:g}", subset=small, na_rep="") if small else styled


def figure(path: str | Path, caption: str) -> None:
    """Show a saved figure (embedded) with its caption, or say that it was not produced."""
    from IPython.display import Image, Markdown, display

    path = Path(path)
    if path.is_file():
        display(Image(filename=str(path)), Markdown(f"*{caption}*"))
    else:
        display(Markdown(f"*{caption}: not produced in this run ({path.name} is absent).*"))


def provenance_table(profile: str | None, out: str | Path | None = None) -> pd.DataFrame:
    """Every run behind the report: notebook, run, profile, status, commit, times, weights."""
    base = Path(out) if out else config.output_root()
    rows = []
    for notebook in ("01_data_merge", *TRAINING_NOTEBOOKS.values(), "04_comparison"):
        for folder in run_folders(notebook, base):
            result = results.read_result(folder) or {}
            if profile and result.get("profile") != profile:
                continue
            prov = result.get("provenance", {})
            weights = result.get("weights")
            rows.append({"notebook": notebook, "run": folder.name, "profile": result.get("profile"),
                         "status": str(result.get("status", ""))[:40], "commit": str(prov.get("git_commit", ""))[:12],
                         "started": prov.get("started"), "finished": prov.get("finished"),
                         "weights sha256": (weights or {}).get("sha256", "")[:16] if isinstance(weights, dict) else ""})
    return pd.DataFrame(rows)


def export_run(run_name: str, dest: str | Path, out: str | Path | None = None) -> Path:
    """Export a completed 05_report run to ``dest``: report.html, figures/ and tables/."""
    base = Path(out) if out else config.output_root()
    folder = base / "05_report" / run_name
    result = results.read_result(folder)
    if not result or result.get("status") != "complete":
        raise config.ConfigError(f"{folder} holds no complete report run; run notebooks/05_report.ipynb first")
    effective = result["effective"]
    comparison = base / "04_comparison" / effective["comparison_run"]
    data = base / "01_data_merge" / effective["data_run"]
    figures = sorted((comparison / "figures").glob("*.png")) + sorted((data / "figures").glob("*.png"))
    tables = sorted((comparison / "tables").glob("*.*")) + [data / "exclusions.csv", data / "cross_source_groups.csv"]
    return export_html(folder / "notebook.ipynb", dest, figures, [t for t in tables if t.is_file()])
