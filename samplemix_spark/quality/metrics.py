"""Evaluator metrics as in the paper's Table 2: ACC, MAE, MSE and CACC (within +-1)."""

from __future__ import annotations

import numpy as np


def quality_metrics(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Percent accuracy, mean absolute and squared error, and percent within one point."""
    error = np.asarray(predicted, dtype=float) - np.asarray(labels, dtype=float)
    return {
        "acc": float(np.mean(error == 0) * 100),
        "mae": float(np.mean(np.abs(error))),
        "mse": float(np.mean(error ** 2)),
        "cacc": float(np.mean(np.abs(error) <= 1) * 100),
    }


def constant_baseline(train_labels: np.ndarray, test_labels: np.ndarray) -> dict[str, float]:
    """Metrics of always predicting the training median: what a model must beat."""
    median = float(np.round(np.median(train_labels)))
    return quality_metrics(np.full(len(test_labels), median), test_labels)
