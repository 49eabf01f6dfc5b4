"""GLUE metrics with scikit-learn and SciPy (the `evaluate` hub cannot be reached offline).

Degenerate inputs never crash: Matthews correlation and F1 of constant predictions are 0 (their
conventional value), while a correlation with a constant vector is undefined and reported as NaN.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

METRICS = ("accuracy", "f1", "mcc", "pearson", "spearman")


def _correlation(kind: str, predictions: NDArray[np.float64], labels: NDArray[np.float64]) -> float:
    if len(labels) < 2 or np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = (
            stats.pearsonr(predictions, labels)
            if kind == "pearson"
            else stats.spearmanr(predictions, labels)
        )
    return float(result[0])


def compute_metric(
    name: str, predictions: NDArray[np.float64], labels: NDArray[np.float64]
) -> float:
    """One metric. Classification predictions are class ids; regression ones are scores."""
    if len(labels) == 0:
        return math.nan
    if name in ("pearson", "spearman"):
        return _correlation(name, predictions.astype(np.float64), labels.astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "accuracy":
            return float(accuracy_score(labels, predictions))
        if name == "f1":
            return float(f1_score(labels, predictions, pos_label=1, zero_division=0.0))
        if name == "mcc":
            return float(matthews_corrcoef(labels, predictions))
    raise ValueError(f"unknown metric '{name}' (known: {', '.join(METRICS)})")


def compute_metrics(
    names: tuple[str, ...], predictions: NDArray[np.float64], labels: NDArray[np.float64]
) -> dict[str, float]:
    return {name: compute_metric(name, predictions, labels) for name in names}


def class_balance(
    predictions: NDArray[np.float64], labels: NDArray[np.float64]
) -> dict[str, float]:
    """Two reference figures beside a classifier's metrics, because a score means little without
    them: the accuracy of answering the most common gold label everywhere (`majority_baseline`),
    and the share of examples given the model's most common answer (`top_prediction_share`, 1.0
    for a model that answers one label everywhere). A score near the baseline with a share near 1
    is a model that collapsed onto one answer, not one that learned a little."""
    if len(labels) == 0:
        return {"majority_baseline": math.nan, "top_prediction_share": math.nan}
    _, gold = np.unique(labels, return_counts=True)
    _, answered = np.unique(predictions, return_counts=True)
    return {
        "majority_baseline": float(gold.max() / len(labels)),
        "top_prediction_share": float(answered.max() / len(predictions)),
    }


def is_better(new: float, best: float | None) -> bool:
    """Higher is better for every metric here; NaN never wins."""
    if math.isnan(new):
        return False
    return best is None or math.isnan(best) or new > best


def json_safe(value: object) -> object:
    """NaN and infinities are not JSON: write them as null so every file opens everywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
