"""Fit a compiled model with per-epoch timing, keep the best epoch, write the history."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HISTORY_FILE = "history.csv"
MODEL_FILE = "model.keras"


@dataclass
class Training:
    """The outcome of :func:`fit`."""

    history: pd.DataFrame  # one row per epoch: epoch, accuracy, auc, loss, val_*, seconds
    best_epoch: int  # 1-based, by val AUC (first of ties)
    seconds: float
    model_path: Path

    @property
    def execution_minutes(self) -> float:
        return self.seconds / 60.0

    @property
    def minutes_per_epoch(self) -> float:
        return self.execution_minutes / max(len(self.history), 1)

    def best(self) -> dict[str, float]:
        """The metrics of the best epoch."""
        row = self.history.loc[self.history["epoch"] == self.best_epoch].iloc[0]
        return {k: float(v) for k, v in row.items() if k != "epoch"}


def seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds (weights, dropout, shuffling, augmentation)."""
    import keras

    keras.utils.set_random_seed(seed)


def _epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Adds ``seconds`` (wall time of the epoch, validation included) to the logs."""

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["seconds"] = time.perf_counter() - self._start

    return EpochTimer()


def fit(model, train_ds, val_ds, *, epochs: int, folder: Path, monitor: str = "val_auc", verbose: int = 2) -> Training:
    """Train, saving the best model (by ``monitor``) and ``history.csv`` into ``folder``."""
    import keras

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_FILE
    checkpoint = keras.callbacks.ModelCheckpoint(model_path, monitor=monitor, mode="max", save_best_only=True)
    started = time.perf_counter()
    result = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        shuffle=False,  # tf.data shuffles
        callbacks=[_epoch_timer(), checkpoint],
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    history = pd.DataFrame(result.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    history.to_csv(folder / HISTORY_FILE, index=False)
    best_epoch = int(history.loc[history[monitor].idxmax(), "epoch"]) if monitor in history else len(history)
    return Training(history, best_epoch, seconds, model_path)


def predict(model, dataset) -> np.ndarray:
    """Probability of COVID (N,) for a dataset: the single sigmoid output, or the COVID column
    of a two-unit softmax."""
    raw = np.asarray(model.predict(dataset, verbose=0))
    return raw[:, 1] if raw.ndim == 2 and raw.shape[1] == 2 else raw.reshape(-1)
