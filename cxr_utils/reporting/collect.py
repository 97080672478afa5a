"""Collect training runs into tables and choose models on val.

Reads the ``result.json`` contract (see ``../shared/design.md``): a run folder counts only when
its status is ``complete``. Runs are identified by a :class:`RunKey` (kind and run name).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .. import registry, results
from .document import spread_text

# fmt: off
TABLE_COLUMNS = [
    "kind", "run", "configuration", "role", "seed", "screened_as", "study_run", "model", "weights", "profile",
    "precision", "size", "epochs", "epochs_run", "stopped_by", "execution_minutes", "minutes_per_epoch", "accuracy",
    "val_accuracy",
    "auc", "val_auc", "loss", "val_loss", "last_accuracy", "last_val_accuracy", "last_auc", "last_val_auc",
    "last_loss", "last_val_loss", "epoch0_val_auc", "epoch0_train_auc", "kept_train_auc", "val_auc_gain",
    "learned", "did_not_learn", "filter", "batch_size", "activation_output", "optimizer", "learning_rate",
    "fine_tune_layers", "best_epoch", "params_total", "params_trainable", "degenerate", "commit", "n_train", "n_val",
    "patience", "still_improving",
]
# fmt: on


class RunKey(NamedTuple):
    """A training run: its kind (custom | transfer) and its run name."""

    kind: str
    run: str

    def __str__(self) -> str:
        return f"{self.kind} {self.run}"

    @property
    def slug(self) -> str:
        """For file names: ``custom_run02``."""
        return f"{self.kind}_{self.run}"


def run_folders(notebook: registry.Notebook, out: str | Path | None = None) -> list[Path]:
    """Run folders of a notebook (set-aside ``.previous`` folders excluded)."""
    return sorted(p for p in notebook.runs_root(out).glob("*") if p.is_dir() and not p.name.endswith(".previous"))


def completed_runs(
    notebook: registry.Notebook, out: str | Path | None = None, include_smoke: bool = False
) -> list[dict]:
    """Every complete ``result.json`` of a notebook, each with its ``folder`` added."""
    found = []
    for folder in run_folders(notebook, out):
        result = results.read_result(folder)
        if result and result.get("status") == "complete" and (include_smoke or result.get("profile") != "smoke"):
            found.append({**result, "folder": str(folder)})
    return found


def find_run(key: RunKey, out: str | Path | None = None) -> dict:
    """The complete result of one training run (with ``folder``); KeyError naming it if absent."""
    for result in completed_runs(registry.TRAINING[key.kind], out, include_smoke=True):
        if result["run"] == key.run:
            return result
    raise KeyError(f"no complete {key.kind} run named {key.run} under {registry.TRAINING[key.kind].runs_root(out)}")


def not_run(out: str | Path | None = None) -> pd.DataFrame:
    """Runs of the training notebooks that did not complete, with their status (kept whole)."""
    rows = []
    for kind, notebook in registry.TRAINING.items():
        for folder in run_folders(notebook, out):
            result = results.read_result(folder) or {"status": "no result.json"}
            if result.get("status") != "complete":
                rows.append({"kind": kind, "run": folder.name, "status": result.get("status", "")})
    return pd.DataFrame(rows, columns=["kind", "run", "status"])


# Table column <- result.json key (dotted) for every training run, and per kind. This is what the
# collector reads of the record that cxr_utils.modeling.experiment writes; the notebook contract
# test checks that real runs of 02 and 03 carry every one of these keys.
RESULT_COLUMNS = {
    "run": "run",
    "role": "role",
    "seed": "effective.seed",
    "screened_as": "screened_as",
    "precision": "precision.policy",
    "profile": "profile",
    "study_run": "effective.study_run",
    "size": "effective.image_size",
    "epochs_run": "epochs_run",
    "stopped_by": "stopped_by",
    "epoch0_val_auc": "epoch0.val_auc",
    "epoch0_train_auc": "epoch0.train_auc",
    "kept_train_auc": "kept_epoch_inference.train_auc",
    "learned": "learned",
    "did_not_learn": "did_not_learn",
    **{f"last_{m}": f"last_epoch.{m}" for m in ("accuracy", "val_accuracy", "auc", "val_auc", "loss", "val_loss")},
    "epochs": "effective.epochs",
    "batch_size": "effective.batch_size",
    "learning_rate": "effective.learning_rate",
    "execution_minutes": "execution_minutes",
    "minutes_per_epoch": "minutes_per_epoch",
    "accuracy": "metrics.train.accuracy",
    "val_accuracy": "metrics.val.accuracy",
    "auc": "metrics.train.auc",
    "val_auc": "metrics.val.auc",
    "loss": "metrics.train.loss",
    "val_loss": "metrics.val.loss",
    "best_epoch": "best_epoch",
    "params_total": "params_total",
    "params_trainable": "params_trainable",
    "commit": "provenance.git_commit",
    "n_train": "data.n_per_split.train",
    "n_val": "data.n_per_split.val",
    "patience": "effective.early_stopping_patience",
}
KIND_COLUMNS = {
    "custom": {
        "filter": "effective.filter",
        "activation_output": "effective.activation_output",
        "optimizer": "effective.optimizer",
        "degenerate": "degenerate",
    },
    "transfer": {
        "model": "effective.backbone",
        "weights": "weights.label",
        "fine_tune_layers": "effective.fine_tune_layers",
    },
}
KIND_DEFAULTS = {  # what the study's set-up fixes for a kind
    "custom": {"model": "custom CNN", "weights": "from scratch"},
    "transfer": {"activation_output": "softmax (2 units)", "optimizer": "adam", "degenerate": False},
}


def result_keys(kind: str) -> list[str]:
    """The dotted ``result.json`` keys the collector reads for a run of ``kind``."""
    return [*RESULT_COLUMNS.values(), *KIND_COLUMNS[kind].values()]


def lookup(result: dict, dotted: str):
    """``result["a"]["b"]`` for ``"a.b"``; None where a step is missing."""
    value = result
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def has_key(result: dict, dotted: str) -> bool:
    """Whether ``result`` holds the dotted key at all (its value may be None)."""
    *parents, last = dotted.split(".")
    holder = lookup(result, ".".join(parents)) if parents else result
    return isinstance(holder, dict) and last in holder


def _row(kind: str, result: dict) -> dict:
    columns = {**RESULT_COLUMNS, **KIND_COLUMNS[kind]}
    row = {"kind": kind, **KIND_DEFAULTS[kind], **{column: lookup(result, key) for column, key in columns.items()}}
    row["degenerate"] = bool(row["degenerate"])
    row["commit"] = (row["commit"] or "")[:12]
    row["role"] = row["role"] or "screening"
    # a screening run's extra seeds (successive halving) belong to the configuration they repeat
    row["configuration"] = row["screened_as"] if row["role"] == "screening" and row["screened_as"] else row["run"]
    if kind == "transfer" and (row["fine_tune_layers"] or 0) > 0:  # epochs run, minutes, metrics: the last phase's
        row["epochs"] = lookup(result, "effective.fine_tune_epochs")
    if row["val_auc"] is not None and row["epoch0_val_auc"] is not None:
        row["val_auc_gain"] = row["val_auc"] - row["epoch0_val_auc"]
    # stopped by its epoch cap with its best epoch the last one: it had not finished learning
    row["still_improving"] = row["stopped_by"] == "epoch cap" and row["best_epoch"] == row["epochs_run"]
    return row


def runs_table(profile: str | None = None, out: str | Path | None = None, role: str | None = None) -> pd.DataFrame:
    """One row per completed custom and transfer run (the study's Table 1 columns and more);
    ``role`` keeps only screening runs or only final fits."""
    rows = [
        _row(kind, result)
        for kind, notebook in registry.TRAINING.items()
        for result in completed_runs(notebook, out, include_smoke=profile == "smoke")
        if profile is None or result["profile"] == profile
    ]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table if role is None else table[table["role"] == role].reset_index(drop=True)


def ineligible(row, fine_tune: bool = True) -> str | None:
    """Why a screening run may not be chosen (None when it may): degenerate set-ups, runs that did
    not learn, and fine-tuned runs where the profile does not refit them."""
    if not fine_tune and row.kind == "transfer" and (row.fine_tune_layers or 0) > 0:
        return "fine-tuned: not refitted at this profile"
    if row.degenerate:
        return "degenerate set-up"
    if row.learned is not None and not pd.isna(row.learned) and not bool(row.learned):
        return f"did not learn ({row.did_not_learn})"
    return None


def configurations(table: pd.DataFrame, kind: str, fine_tune: bool = True) -> pd.DataFrame:
    """One row per screening configuration of ``kind``: its seeds' val AUCs (mean, min, max,
    count) and whether it may be chosen (decided on its first seed's run, see :func:`ineligible`)."""
    screening = table[(table["kind"] == kind) & (table["role"] == "screening") & table["val_auc"].notna()]
    rows = []
    for name, part in screening.groupby("configuration", sort=True):
        first = part[part["run"] == name]
        reason = ineligible(next(first.itertuples()), fine_tune) if len(first) else "its first seed's run is missing"
        values = part["val_auc"].astype(float)
        rows.append(
            {
                "kind": kind,
                "configuration": name,
                "seeds": len(part),
                "first_seed_val_auc": float(first["val_auc"].iloc[0]) if len(first) else float("nan"),
                "mean_val_auc": values.mean(),
                "min_val_auc": values.min(),
                "max_val_auc": values.max(),
                "eligible": reason or "eligible",
            }
        )
    columns = ["kind", "configuration", "seeds", "first_seed_val_auc", "mean_val_auc", "min_val_auc", "max_val_auc"]
    return pd.DataFrame(rows, columns=[*columns, "eligible"])


def leaders(table: pd.DataFrame, kind: str, top: int, fine_tune: bool = True) -> list[str]:
    """The eligible configurations of ``kind`` whose first-seed val AUC is among the ``top`` best
    (ties at the cut included): the ones successive halving runs again with more seeds."""
    found = configurations(table, kind, fine_tune)
    found = found[found["eligible"] == "eligible"].sort_values(
        ["first_seed_val_auc", "configuration"], ascending=[False, True]
    )
    if found.empty:
        return []
    cut = found["first_seed_val_auc"].iloc[min(top, len(found)) - 1]
    return list(found[found["first_seed_val_auc"] >= cut]["configuration"])


def choose_on_val(table: pd.DataFrame, kind: str, fine_tune: bool = True) -> RunKey | None:
    """The screening configuration of ``kind`` chosen on val (None when none is eligible).

    The rule (successive halving): the configurations that compete (see :func:`competing`: the
    leaders run again with more seeds, else every eligible one) are ranked by their mean val AUC
    over their seeds; ties go to the higher lowest seed, then to the first run name. With one seed
    each, this is the highest val AUC."""
    finalists = competing(table, kind, fine_tune)
    if finalists.empty:
        return None
    ranked = finalists.sort_values(["mean_val_auc", "min_val_auc", "configuration"], ascending=[False, False, True])
    return RunKey(kind, str(ranked.iloc[0]["configuration"]))


def competing(table: pd.DataFrame, kind: str, fine_tune: bool = True) -> pd.DataFrame:
    """The eligible configurations the choice is among: those run again with more seeds (the
    leaders), or every eligible one where none was. A leader one of whose extra seeds failed still
    competes, on the seeds it has."""
    found = configurations(table, kind, fine_tune)
    found = found[found["eligible"] == "eligible"]
    reseeded = found[found["seeds"] > 1]
    return (reseeded if len(reseeded) else found).reset_index(drop=True)


def seed_table(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    """One row per screening run of ``kind`` and seed: its configuration, seed and val AUC, beside
    the configuration's mean over its seeds."""
    screening = table[(table["kind"] == kind) & (table["role"] == "screening") & table["val_auc"].notna()]
    rows = screening[["kind", "configuration", "run", "seed", "val_auc"]].copy()
    rows["mean_val_auc"] = rows.groupby("configuration")["val_auc"].transform("mean")
    return rows.sort_values(["mean_val_auc", "configuration", "seed"], ascending=[False, True, True]).reset_index(
        drop=True
    )


STABILITY_COLUMNS = ["kind", "configuration", "seeds", "mean_val_auc", "share_chosen", "chosen", "verdict"]
CLEAR_SHARE = 0.9  # a choice is clear when it would be made from at least this share of one-seed draws


def choice_stability(table: pd.DataFrame, kind: str, fine_tune: bool = True) -> pd.DataFrame:
    """For the configurations that compete (see :func:`choose_on_val`): how often each would have
    been chosen had only one of its seeds been run, over every draw of one seed per configuration
    (a tie shares the draw; see :func:`win_shares`). ``chosen`` marks the mean-based choice;
    ``verdict`` says whether that choice is clear (it wins at least :data:`CLEAR_SHARE` of the
    draws) or within noise."""
    chosen = choose_on_val(table, kind, fine_tune)
    if chosen is None:
        return pd.DataFrame(columns=STABILITY_COLUMNS)
    finalists = competing(table, kind, fine_tune)
    seeds = table[(table["kind"] == kind) & (table["role"] == "screening") & table["val_auc"].notna()]
    values = [seeds[seeds["configuration"] == c]["val_auc"].to_numpy(dtype=float) for c in finalists["configuration"]]
    finalists["share_chosen"] = win_shares(values)
    finalists["chosen"] = finalists["configuration"] == chosen.run
    share = float(finalists.loc[finalists["chosen"], "share_chosen"].iloc[0])
    finalists["verdict"] = "clear" if share >= CLEAR_SHARE else "within noise"
    return finalists[STABILITY_COLUMNS]


def win_shares(values: list[np.ndarray]) -> list[float]:
    """For groups of equally likely values, the probability that each group's draw is the highest
    when one value is drawn from every group (ties share the win), computed exactly without listing
    the draws: for each value v of a group, the other groups' chances of drawing below v and equal
    to v, multiplied out as a polynomial in the number of groups tying at v."""
    shares = []
    for k, own in enumerate(values):
        total = 0.0
        for v in own:
            ties = np.array([1.0])  # coefficient t: probability that t other groups tie at v, none above
            for j, other in enumerate(values):
                if j != k:
                    ties = np.convolve(ties, [np.mean(other < v), np.mean(other == v)])
            total += sum(p / (t + 1) for t, p in enumerate(ties)) / len(own)
        shares.append(float(total))
    return shares


def history_file(result_folder: str | Path) -> Path:
    """The history of the epochs that produced a run's saved model (fine-tuning, head, or plain)."""
    folder = Path(result_folder)
    for candidate in ("finetune/history.csv", "head/history.csv", "history.csv"):
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(f"no history.csv under {folder}")


def load_histories(table: pd.DataFrame, out: str | Path | None = None) -> dict[RunKey, pd.DataFrame]:
    """The history of every run in the table, by :class:`RunKey`."""
    return {
        RunKey(row.kind, row.run): pd.read_csv(history_file(registry.TRAINING[row.kind].run_folder(row.run, out)))
        for row in table.itertuples()
    }


SCREENING_VIEW = [
    "kind", "run", "study_run", "model", "weights", "size", "epochs", "epochs_run", "best_epoch", "epoch0_val_auc",
    "val_auc", "val_auc_gain", "epoch0_train_auc", "kept_train_auc", "auc", "learned", "degenerate",
]  # fmt: skip
LAST_VS_KEPT = [
    "kind", "run", "epochs_run", "best_epoch", "last_val_accuracy", "val_accuracy", "last_val_auc", "val_auc",
    "last_val_loss", "val_loss",
]  # fmt: skip
FINAL_VIEW = [
    "kind", "screened_as", "run", "seed", "size", "epochs", "epochs_run", "stopped_by", "best_epoch", "still_improving",
    "epoch0_val_auc", "val_auc", "val_auc_gain", "epoch0_train_auc", "kept_train_auc", "execution_minutes",
]  # fmt: skip


def eligibility(table: pd.DataFrame, fine_tune: bool = True) -> pd.DataFrame:
    """Each screening configuration's val AUC (its first seed's), the number of seeds it ran and
    their mean, and whether it may be chosen (or why not)."""
    found = [configurations(table, kind, fine_tune) for kind in ("custom", "transfer")]
    found = pd.concat([part for part in found if len(part)] or found[:1], ignore_index=True)
    renamed = found.rename(columns={"configuration": "run", "first_seed_val_auc": "val_auc"})
    return renamed[["kind", "run", "val_auc", "seeds", "mean_val_auc", "eligible"]].sort_values(
        ["kind", "mean_val_auc"], ascending=[True, False]
    )


def seed_spread(
    final: pd.DataFrame, columns: tuple[str, ...] = ("epoch0_val_auc", "val_auc", "kept_train_auc")
) -> pd.DataFrame:
    """Mean and min-max over seeds of each final-fit configuration (one row per kind)."""
    rows = []
    for (kind, screened_as), part in final.groupby(["kind", "screened_as"]):
        row = {"kind": kind, "screened_as": screened_as, "seeds": len(part)}
        for column in columns:
            row[column] = spread_text(part[column])
        rows.append(row)
    return pd.DataFrame(rows)


PHASE_COLUMNS = ["run", "phase", "epochs_run", "best_epoch", "execution_minutes", "minutes_per_epoch", "n_train",
                 "epoch0_val_auc", "val_auc", "kept_train_auc", "learned"]  # fmt: skip


def transfer_phases(results: list[dict]) -> pd.DataFrame:
    """One row per training phase of each transfer run: the head on cached features, and the
    fine-tuning phase where there is one (its own epochs, minutes and AUCs)."""
    rows = []
    for result in results:
        phases = [("head on features", result.get("head_phase") or result)]
        if result.get("head_phase"):
            top = result["effective"].get("fine_tune_layers")
            phases.append((f"fine-tuning (top {top} layers, {result.get('fine_tuned_layers')} with weights)", result))
        for phase, record in phases:
            data = result.get("fine_tune_data") if phase.startswith("fine") else result.get("data")
            rows.append(
                {
                    "run": result["run"],
                    "phase": phase,
                    "epochs_run": record.get("epochs_run"),
                    "best_epoch": record.get("best_epoch"),
                    "execution_minutes": record.get("execution_minutes"),
                    "minutes_per_epoch": record.get("minutes_per_epoch"),
                    "n_train": lookup(data or {}, "n_per_split.train"),
                    "epoch0_val_auc": lookup(record, "epoch0.val_auc"),
                    "val_auc": lookup(record, "metrics.val.auc"),
                    "kept_train_auc": lookup(record, "kept_epoch_inference.train_auc"),
                    "learned": record.get("learned"),
                }
            )
    return pd.DataFrame(rows, columns=PHASE_COLUMNS)
