"""Fit a compiled model with per-epoch timing, keep the best epoch, write the history; P(COVID) of a
model and the ROC AUC of scores."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

HISTORY_FILE = "history.csv"
MODEL_FILE = "model.keras"


@dataclass
class Training:
    """The outcome of :func:`fit`."""

    history: pd.DataFrame  # one row per epoch: epoch, accuracy, auc, loss, val_*, seconds
    best_epoch: int  # 1-based, by val AUC (first of ties)
    seconds: float
    model_path: Path
    epochs_cap: int | None = None  # the most epochs allowed
    stopped_by: str = "epoch cap"  # "epoch cap", or "patience" when early stopping ended it

    @property
    def execution_minutes(self) -> float:
        return self.seconds / 60.0

    @property
    def minutes_per_epoch(self) -> float:
        return self.execution_minutes / max(len(self.history), 1)

    def best(self) -> dict[str, float]:
        """The metrics of the best epoch."""
        return self.epoch(self.best_epoch)

    def last(self) -> dict[str, float]:
        """The metrics of the last epoch (what a run without checkpointing, like the study's, reports)."""
        return self.epoch(int(self.history["epoch"].iloc[-1]))

    def epoch(self, epoch: int) -> dict[str, float]:
        """The history row of one epoch (1-based), without the epoch number."""
        row = self.history.loc[self.history["epoch"] == epoch].iloc[0]
        return {k: float(v) for k, v in row.items() if k != "epoch"}


def seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds (weights, dropout, shuffling, augmentation)."""
    import keras

    keras.utils.set_random_seed(seed)


def _callbacks(monitor: str):
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Adds ``seconds`` (wall time of the epoch, validation included) to the logs."""

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["seconds"] = time.perf_counter() - self._start

    class KeepBest(keras.callbacks.Callback):
        """Keeps a copy of the weights of the epoch with the highest ``monitor`` (the first of
        ties) in memory: one save at the end instead of one per improvement."""

        best_value, best_weights = -np.inf, None

        def on_epoch_end(self, epoch, logs=None):
            if logs[monitor] > self.best_value:
                self.best_value, self.best_weights = logs[monitor], [w.copy() for w in self.model.get_weights()]

    return EpochTimer(), KeepBest()


def fit(
    model,
    train_ds,
    val_ds,
    *,
    epochs: int,
    folder: Path,
    monitor: str = "val_auc",
    verbose: int = 2,
    patience: int | None = None,
) -> Training:
    """Train; afterwards ``model`` holds the weights of the best epoch (by ``monitor``; the first
    of ties), saved with ``history.csv`` into ``folder``. With ``patience``, stop once ``monitor``
    has not improved for that many epochs."""
    import keras

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    timer, keep = _callbacks(monitor)
    callbacks = [timer, keep]
    if patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience))
    started = time.perf_counter()
    result = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        shuffle=False,  # tf.data shuffles
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    model.set_weights(keep.best_weights)
    model.save(folder / MODEL_FILE)
    history = pd.DataFrame(result.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    history.to_csv(folder / HISTORY_FILE, index=False)
    best_epoch = int(history.loc[history[monitor].idxmax(), "epoch"])
    stopped_by = "patience" if patience and len(history) < epochs else "epoch cap"
    return Training(history, best_epoch, seconds, folder / MODEL_FILE, epochs, stopped_by)


def predict(model, dataset) -> np.ndarray:
    """Probability of COVID (N,) for a dataset: the single sigmoid output, or the COVID column
    of a two-unit softmax."""
    raw = np.asarray(model.predict(dataset, verbose=0))
    return raw[:, 1] if raw.ndim == 2 and raw.shape[1] == 2 else raw.reshape(-1)


def auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (NaN with one class) from ranks, as the Mann-Whitney U statistic: equal to
    scikit-learn's ``roc_auc_score`` (ties count one half) at a fraction of its cost, which
    matters inside bootstrap loops."""
    positive = np.asarray(y_true).astype(bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
