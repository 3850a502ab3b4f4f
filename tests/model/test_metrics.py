"""Metrics against a case computed by hand."""

import numpy as np
import pytest

from model.metrics import (
    classification_metrics,
    expected_calibration_error,
    operating_point,
    reliability_curve,
    roc_points,
    threshold_for_fpr,
)

LABELS = [0, 0, 0, 1, 1, 1]
P_FAKE = [0.1, 0.7, 0.25, 0.85, 0.35, 0.95]  # verdicts: real, FAKE, real, fake, REAL, fake


def test_metrics_of_a_hand_computed_case():
    metrics = classification_metrics(LABELS, P_FAKE)
    assert set(metrics) == {
        "n",
        "threshold",
        "operating_point",
        "tpr_at_fpr",
        "average_precision",
        "accuracy",
        "roc_auc",
        "ece",
        "brier",
        "per_class",
        "confusion_matrix",
    }
    assert metrics["n"] == 6
    assert metrics["confusion_matrix"] == [[2, 1], [1, 2]]
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # AUC: of the 9 (fake, real) pairs, the fake one scores higher in 8.
    assert metrics["roc_auc"] == pytest.approx(8 / 9)
    assert metrics["brier"] == pytest.approx((0.01 + 0.49 + 0.0625 + 0.0225 + 0.4225 + 0.0025) / 6)
    for name in ("real", "fake"):
        row = metrics["per_class"][name]
        assert row == pytest.approx(
            {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
        )


def test_ece_of_a_hand_computed_case():
    # Confidences 0.9, 0.7, 0.75, 0.85, 0.65, 0.95; with 5 bins: (0.6, 0.8] holds 0.7, 0.75, 0.65
    # with 1 of 3 right (gap |1/3 - 0.7|); (0.8, 1] holds 0.9, 0.85, 0.95, all right (gap 0.1).
    expected = 0.5 * abs(1 / 3 - 0.7) + 0.5 * abs(1 - 0.9)
    assert expected_calibration_error(LABELS, P_FAKE, bins=5) == pytest.approx(expected)


def test_one_class_has_no_auc_and_perfect_calls_have_no_error():
    metrics = classification_metrics([1, 1, 1], [0.9, 0.8, 0.7])
    assert metrics["roc_auc"] is None and metrics["accuracy"] == 1.0
    assert metrics["per_class"]["real"]["support"] == 0
    assert roc_points([1, 1], [0.5, 0.6]) is None


def test_plot_helpers_cover_the_inputs():
    curve = reliability_curve(LABELS, P_FAKE, bins=4)
    assert sum(curve["count"]) == 6
    assert curve["fraction_fake"][0] == 0.0  # 0.1 is a real image
    points = roc_points(LABELS, P_FAKE)
    assert points["fpr"][0] == 0.0 and points["tpr"][-1] == 1.0
    assert max(points["thresholds"]) <= 1.0


def test_mismatched_or_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="labels but"):
        classification_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        classification_metrics(np.array([0, 2]), [0.5, 0.5])


def test_threshold_for_a_target_false_positive_rate():
    rng = np.random.default_rng(0)
    real = rng.uniform(0.0, 0.9, 200)  # 200 real: 1% allows 2 above the threshold
    fake = rng.uniform(0.3, 1.0, 300)
    labels = np.r_[np.zeros(200, int), np.ones(300, int)]
    p_fake = np.r_[real, fake]
    threshold = threshold_for_fpr(labels, p_fake, 0.01)
    assert (real >= threshold).sum() == 2
    assert (real >= np.sort(real)[-3]).sum() == 3  # any lower threshold flags a third
    assert threshold > np.sort(real)[-3]
    point = operating_point(labels, p_fake, threshold)
    assert point["fpr"] == pytest.approx(0.01)
    assert point["tpr"] == pytest.approx((fake >= threshold).mean())
    assert threshold_for_fpr(labels, p_fake, 0.0) > real.max()
    assert threshold_for_fpr([1, 1], [0.2, 0.3], 0.01) == 0.5  # no real images: no fit
    with pytest.raises(ValueError, match="false-positive rate"):
        threshold_for_fpr(labels, p_fake, 1.5)


def test_metrics_at_a_threshold_and_the_rates_at_fixed_false_positives():
    metrics = classification_metrics(LABELS, P_FAKE, threshold=0.8)
    # At 0.8: reals 0.1, 0.7, 0.25 all real; fakes 0.85, 0.95 caught, 0.35 missed.
    assert metrics["confusion_matrix"] == [[3, 0], [1, 2]]
    assert metrics["threshold"] == 0.8
    assert metrics["operating_point"] == {"threshold": 0.8, "fpr": 0.0, "tpr": pytest.approx(2 / 3)}
    # With no false positive allowed the best is 2 of 3 fakes (above 0.7, the top real score).
    assert metrics["tpr_at_fpr"] == {"0.01": pytest.approx(2 / 3), "0.05": pytest.approx(2 / 3)}
    # Average precision: fakes at ranks 1, 2 (precision 1, 1) and 0.35 at rank 4 (3/4).
    assert metrics["average_precision"] == pytest.approx((1 + 1 + 3 / 4) / 3)
