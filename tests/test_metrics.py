from __future__ import annotations

import math

import numpy as np
import pytest

from smartft.data.tasks import get_task
from smartft.evaluation import score
from smartft.metrics import class_balance, compute_metric, compute_metrics, is_better, json_safe


def test_values_match_hand_computation() -> None:
    preds, gold = np.array([1.0, 0, 1, 1]), np.array([1.0, 0, 0, 1])
    assert compute_metric("accuracy", preds, gold) == 0.75
    assert compute_metric("f1", preds, gold) == pytest.approx(0.8)  # p = 2/3, r = 1
    # MCC = (TP·TN − FP·FN) / sqrt(...) = (2·1 − 1·0) / sqrt(3·2·1·2)
    assert compute_metric("mcc", preds, gold) == pytest.approx(2 / math.sqrt(12))
    x, y = np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])
    assert compute_metric("pearson", x, y) == pytest.approx(0.8)
    assert compute_metric("spearman", x, y) == pytest.approx(0.8)


def test_constant_predictions_are_defined_or_nan() -> None:
    gold = np.array([0.0, 1, 1, 0])
    constant = np.zeros(4)
    assert compute_metric("mcc", constant, gold) == 0.0
    assert compute_metric("f1", constant, gold) == 0.0
    assert math.isnan(compute_metric("pearson", constant, gold))
    assert math.isnan(compute_metric("spearman", constant, gold))


def test_nan_never_wins_and_is_null_in_json() -> None:
    assert not is_better(math.nan, 0.1)
    assert is_better(0.1, math.nan) and is_better(0.2, None) and not is_better(0.1, 0.2)
    metrics = compute_metrics(("pearson",), np.zeros(3), np.arange(3.0))
    assert json_safe(metrics) == {"pearson": None}


def test_unknown_metric() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metric("bleu", np.zeros(2), np.zeros(2))


def test_class_balance_by_hand() -> None:
    """6 of 8 gold labels are 1 (a constant "1" scores 0.75); the model answers 0 on 7 of 8."""
    labels = np.array([1, 1, 1, 0, 1, 1, 0, 1], dtype=np.float64)
    predictions = np.array([0, 0, 0, 0, 0, 1, 0, 0], dtype=np.float64)
    assert class_balance(predictions, labels) == {
        "majority_baseline": 0.75,
        "top_prediction_share": 0.875,
    }
    nothing = class_balance(np.zeros(0), np.zeros(0))
    assert all(math.isnan(v) for v in nothing.values())


def test_classifiers_report_their_balance_and_other_shapes_do_not() -> None:
    outputs = np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    labels = np.array([1, 0, 0, 0], dtype=np.float64)
    metrics = score(get_task("mrpc"), outputs, labels)
    assert metrics["top_prediction_share"] == 0.75 and metrics["majority_baseline"] == 0.75
    assert metrics["accuracy"] == 0.5
    regression = score(get_task("stsb"), np.array([[1.0], [2.0], [3.0]]), np.arange(3.0))
    assert "top_prediction_share" not in regression and "majority_baseline" not in regression
