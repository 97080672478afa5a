"""Metrics from labels and scores."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score


def confusion(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """2x2 counts [[TN, FP], [FN, TP]] with COVID (1) as the positive class."""
    return confusion_matrix(np.asarray(y_true).astype(int), (np.asarray(scores) >= threshold).astype(int), labels=[0, 1])


def basic_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, AUC (NaN when one class only), sensitivity and specificity at ``threshold``."""
    (tn, fp), (fn, tp) = confusion(y_true, scores, threshold)
    y_true = np.asarray(y_true).astype(int)
    both = len(np.unique(y_true)) == 2
    return {
        "n": int(len(y_true)),
        "accuracy": float((tp + tn) / max(len(y_true), 1)),
        "auc": float(roc_auc_score(y_true, scores)) if both else float("nan"),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else float("nan"),
        "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
    }
