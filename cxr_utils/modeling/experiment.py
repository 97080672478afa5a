"""The steps every training notebook shares: load train/val, measure the untrained model, record
a training phase, fine-tune.

What a training run writes to ``result.json`` is built here and only here, so the notebooks
(02, 03), the run collector (:mod:`cxr_utils.reporting.collect`) and the tests agree on one
record: ``metrics`` (train at the kept epoch, val of the kept model), ``last_epoch`` (what a run
without checkpointing would report), ``epoch0`` (the compiled model before any step: AUC on val
and on the un-augmented training images, in inference mode), ``kept_epoch_inference`` (the same
two AUCs of the kept model), ``learned`` / ``did_not_learn``, ``best_epoch``, ``epochs_run``,
``epochs_cap``, ``stopped_by``, ``execution_minutes``, ``minutes_per_epoch``, ``params_total``,
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
from ..data import datasets
from ..data.images import file_sha256
from ..results import Run
from . import backbones, features, models, training

TRAIN_METRICS = ("accuracy", "auc", "loss")
HISTORY_METRICS = ("accuracy", "auc", "loss", "val_accuracy", "val_auc", "val_loss")
# A run learned when its kept model's val AUC is above its epoch-0 val AUC by more than this
# (about one standard error of an AUC on a few hundred val images) and its training loss fell.
LEARNING_MARGIN = 0.02


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


def custom_cnn(params: Mapping[str, Any]):
    """The study's custom CNN of a run's parameters, compiled (its optimizer, learning rate, loss)."""
    model = models.custom_cnn_from(params)
    models.compile_model(model, params["optimizer"], params["learning_rate"], params["loss"])
    return model


def image_datasets(data: TrainVal, params: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(training batches: shuffled with the run's seed, augmented when ``augment``; the same
    training images un-augmented and in order, for inference-mode AUC; val batches)."""
    augment = datasets.augmentation_layers(params["seed"]) if params.get("augment", True) else None
    batches = {"batch_size": params["batch_size"], "channels": params.get("channels", 3)}
    return (
        datasets.make_dataset(data.train, shuffle_seed=params["seed"], augment=augment, **batches),
        datasets.make_dataset(data.train, **batches),
        datasets.make_dataset(data.val, **batches),
    )


def fit_head(
    train_features: np.ndarray,
    val_features: np.ndarray,
    data: TrainVal,
    params: Mapping[str, Any],
    folder: Path,
    verbose: int = 0,
):
    """The study's head (Dense(2, softmax), Adam at ``learning_rate``) trained on cached features;
    returns the head (holding its kept epoch's weights), the training record and the untrained
    head's AUCs (epoch 0)."""
    head = features.build_head(train_features.shape[1])
    features.compile_head(head, params["learning_rate"])
    epoch0, _ = inference_aucs(head, train_features, val_features, data)
    fit = training.fit(
        head,
        features.feature_dataset(train_features, data.train.y, params["batch_size"], params["seed"]),
        features.feature_dataset(val_features, data.val.y, params["batch_size"]),
        epochs=params["epochs"],
        folder=folder,
        verbose=verbose,
        patience=params.get("early_stopping_patience"),
    )
    return head, fit, epoch0


def parameter_counts(model) -> tuple[int, int]:
    """(all parameters, trainable parameters) of a Keras model."""
    return int(model.count_params()), sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def inference_aucs(model, train_input, val_input, data: TrainVal) -> tuple[dict[str, float], np.ndarray]:
    """AUC of a model in inference mode on the un-augmented training images and on val (inputs:
    datasets or arrays in the same order as ``data``); returns the AUCs and the val scores."""
    val_scores = training.predict(model, val_input)
    aucs = {
        "train_auc": training.auc(data.train.y, training.predict(model, train_input)),
        "val_auc": training.auc(data.val.y, val_scores),
    }
    return aucs, val_scores


def learning_check(
    epoch0_val_auc: float, kept_val_auc: float, history: pd.DataFrame, margin: float = LEARNING_MARGIN
) -> tuple[bool, str]:
    """Did training add anything? (learned, reason if not): the kept model's val AUC must be above
    the untrained model's by more than ``margin``, and the training loss must fall below its first
    epoch's at some later epoch (not checkable after one epoch)."""
    reasons = []
    if not kept_val_auc - epoch0_val_auc > margin:
        reasons.append(
            f"kept-epoch val AUC {kept_val_auc:.3f} is not above epoch 0's {epoch0_val_auc:.3f} by more than {margin}"
        )
    loss = history["loss"].to_numpy()
    if len(loss) >= 2 and not (loss[1:] < loss[0]).any():
        reasons.append(f"training loss never fell below its first epoch's ({loss[0]:.4f})")
    return not reasons, "; ".join(reasons)


def training_summary(
    fit: training.Training,
    val_metrics: Mapping[str, float],
    params_total: int,
    params_trainable: int,
    epoch0: Mapping[str, float],
    kept: Mapping[str, float],
) -> dict[str, Any]:
    """The record of one training phase (see the module docstring). ``epoch0`` and ``kept`` are
    :func:`inference_aucs` of the untrained and of the kept model."""
    best = fit.best()
    learned, reason = learning_check(epoch0["val_auc"], val_metrics["auc"], fit.history)
    return {
        "metrics": {"train": {k: best[k] for k in TRAIN_METRICS}, "val": {**val_metrics, "loss": best["val_loss"]}},
        "last_epoch": {k: v for k, v in fit.last().items() if k in HISTORY_METRICS},
        "epoch0": dict(epoch0),
        "kept_epoch_inference": dict(kept),
        "learned": learned,
        "did_not_learn": reason or None,
        "learning_margin": LEARNING_MARGIN,
        "best_epoch": fit.best_epoch,
        "epochs_run": len(fit.history),
        "epochs_cap": fit.epochs_cap,
        "stopped_by": fit.stopped_by,
        "execution_minutes": fit.execution_minutes,
        "minutes_per_epoch": fit.minutes_per_epoch,
        "params_total": params_total,
        "params_trainable": params_trainable,
    }


def record_training(
    run: Run,
    fit: training.Training,
    model,
    val_metrics: Mapping[str, float],
    data: TrainVal,
    epoch0: Mapping[str, float],
    kept: Mapping[str, float],
    **extra: Any,
) -> None:
    """Write a training run's record (see the module docstring) and ``extra`` fields to ``result.json``."""
    summary = training_summary(fit, val_metrics, *parameter_counts(model), epoch0, kept)
    run.record(**summary, data=data.record(), **extra)


def fine_tuning_data(data: TrainVal, params: Mapping[str, Any]) -> tuple[TrainVal, np.ndarray]:
    """The images of the fine-tuning phase: the head's training images, or a seeded class-balanced
    subset of ``fine_tune_max_train_images`` of them (fine-tuning runs the whole backbone on every
    image in every epoch); returns the data and the positions of the training images taken."""
    train, picked = datasets.take(data.train, params["fine_tune_max_train_images"], params["seed"])
    return TrainVal(train, data.val, data.manifest_file), picked


@dataclass
class FineTuning:
    """The outcome of :func:`fine_tune`."""

    fit: training.Training
    model: Any  # the fine-tuned model of the kept epoch
    val_scores: np.ndarray
    layers: int  # backbone layers unfrozen
    epoch0: dict[str, float]  # the model before fine-tuning (the head phase's kept model)
    kept: dict[str, float]  # inference-mode AUCs of the fine-tuned model


def fine_tune(
    model, data: TrainVal, params: Mapping[str, Any], folder: Path, epoch0: Mapping[str, float]
) -> FineTuning:
    """Unfreeze the top ``fine_tune_layers`` backbone layers (BatchNorm stays frozen), recompile at
    ``fine_tune_learning_rate`` and train end to end on images with the study's augmentation;
    keeps the epoch with the best val AUC (under ``folder/finetune``). ``epoch0``: the AUCs of
    ``model`` as it is now (the starting point of this phase)."""
    layers = backbones.unfreeze_top(model, params["fine_tune_layers"])
    features.compile_head(model, params["fine_tune_learning_rate"])
    augment = datasets.augmentation_layers(params["seed"])
    batch = params["batch_size"]
    val_ds = datasets.make_dataset(data.val, batch_size=batch, one_hot=True)
    train_ds = datasets.make_dataset(
        data.train, batch_size=batch, shuffle_seed=params["seed"], augment=augment, one_hot=True
    )
    fit = training.fit(
        model,
        train_ds,
        val_ds,
        epochs=params["fine_tune_epochs"],
        folder=Path(folder) / "finetune",
        patience=params.get("early_stopping_patience"),
    )
    tuned = backbones.load_model(fit.model_path)
    kept, val_scores = inference_aucs(tuned, datasets.make_dataset(data.train, batch_size=batch), val_ds, data)
    return FineTuning(fit, tuned, val_scores, layers, dict(epoch0), kept)
