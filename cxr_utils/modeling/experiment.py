"""The steps every training notebook shares: load train/val, record a training phase, fine-tune.

What a training run writes to ``result.json`` is built here and only here, so the notebooks
(02, 03), the run collector (:mod:`cxr_utils.reporting.collect`) and the tests agree on one
record: ``metrics`` (train at the kept epoch, val of the kept model), ``best_epoch``,
``epochs_run``, ``execution_minutes``, ``minutes_per_epoch``, ``params_total``,
``params_trainable`` and ``data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import config, registry
from ..analysis import evaluation
from ..data import datasets
from ..data.images import file_sha256
from ..runs.results import Run
from . import backbones, features, training

TRAIN_METRICS = ("accuracy", "auc", "loss")


@dataclass
class TrainVal:
    """The training and validation images of a run, and the manifest they came from."""

    train: datasets.SplitArrays
    val: datasets.SplitArrays
    manifest_file: Path

    def counts(self) -> pd.DataFrame:
        """Images per label in each split (what the notebook shows)."""
        return pd.DataFrame(
            {"train": self.train.rows["label"].value_counts(), "val": self.val.rows["label"].value_counts()}
        )

    def record(self) -> dict[str, Any]:
        """The ``data`` entry of ``result.json``: manifest file and hash, images per split."""
        return {
            "manifest": str(self.manifest_file),
            "manifest_sha256": file_sha256(self.manifest_file),
            "n_per_split": {"train": len(self.train.y), "val": len(self.val.y)},
            "n_covid": {"train": int(self.train.y.sum()), "val": int(self.val.y.sum())},
        }


def manifest_file(params: Mapping[str, Any]) -> Path:
    """The run's manifest: ``params['manifest']`` when given, else the data-merge run ``data_run``'s."""
    return Path(params["manifest"]) if params.get("manifest") else registry.manifest_file(params["data_run"])


def load_train_val(params: Mapping[str, Any], run: Run | None = None) -> TrainVal:
    """Seed everything, then load the run's train subset (class-balanced) and val subset
    (label proportions kept) at ``image_size``; unreadable images are skipped and recorded as
    warnings of ``run``."""
    path = manifest_file(params)
    manifest = datasets.read_manifest(path)
    training.seed_everything(params["seed"])
    load = {"root": config.data_root(), "seed": params["seed"]}
    train = datasets.load_split(
        manifest, "train", params["image_size"], max_images=params["max_train_images"], balanced=True, **load
    )
    val = datasets.load_split(manifest, "val", params["image_size"], max_images=params["max_val_images"], **load)
    if run is not None:
        for split, arrays in (("train", train), ("val", val)):
            for bad in arrays.failures.itertuples():
                run.warn(f"{split}: skipped {bad.path} ({bad.reason}: {bad.detail})")
    return TrainVal(train, val, path)


def parameter_counts(model) -> tuple[int, int]:
    """(all parameters, trainable parameters) of a Keras model."""
    return int(model.count_params()), sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def training_summary(
    fit: training.Training, val_metrics: Mapping[str, float], params_total: int, params_trainable: int
) -> dict[str, Any]:
    """The record of one training phase: train metrics at the kept epoch, val metrics of the kept
    model (with the kept epoch's val loss), epochs, minutes and parameter counts."""
    best = fit.best()
    return {
        "metrics": {"train": {k: best[k] for k in TRAIN_METRICS}, "val": {**val_metrics, "loss": best["val_loss"]}},
        "best_epoch": fit.best_epoch,
        "epochs_run": len(fit.history),
        "execution_minutes": fit.execution_minutes,
        "minutes_per_epoch": fit.minutes_per_epoch,
        "params_total": params_total,
        "params_trainable": params_trainable,
    }


def record_training(
    run: Run, fit: training.Training, model, val_metrics: Mapping[str, float], data: TrainVal, **extra: Any
) -> None:
    """Write a training run's record (see the module docstring) and ``extra`` fields to ``result.json``."""
    run.record(**training_summary(fit, val_metrics, *parameter_counts(model)), data=data.record(), **extra)


def val_metrics(model, dataset, y: np.ndarray) -> dict[str, float]:
    """Metrics of a model's scores on a val dataset at threshold 0.5."""
    return evaluation.basic_metrics(y, training.predict(model, dataset))


@dataclass
class FineTuning:
    """The outcome of :func:`fine_tune`."""

    fit: training.Training
    model: Any  # the fine-tuned model of the kept epoch
    val_scores: np.ndarray
    layers: int  # backbone layers unfrozen


def fine_tune(model, data: TrainVal, params: Mapping[str, Any], folder: Path) -> FineTuning:
    """Unfreeze the top ``fine_tune_layers`` backbone layers (BatchNorm stays frozen), recompile at
    ``fine_tune_learning_rate`` and train end to end on images with the study's augmentation;
    keeps the epoch with the best val AUC (under ``folder/finetune``)."""
    layers = backbones.unfreeze_top(model, params["fine_tune_layers"])
    features.compile_head(model, params["fine_tune_learning_rate"])
    augment = datasets.augmentation_layers(params["seed"])
    batch = params["batch_size"]
    val_ds = datasets.make_dataset(data.val, batch_size=batch, one_hot=True)
    fit = training.fit(
        model,
        datasets.make_dataset(data.train, batch_size=batch, shuffle_seed=params["seed"], augment=augment, one_hot=True),
        val_ds,
        epochs=params["fine_tune_epochs"],
        folder=Path(folder) / "finetune",
    )
    tuned = backbones.load_model(fit.model_path)
    return FineTuning(fit, tuned, training.predict(tuned, val_ds), layers)
