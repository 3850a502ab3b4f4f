"""Classification metrics for the REAL/FAKE call, computed with scikit-learn.

Probabilities are p_fake (class 1); the verdict is FAKE when ``p_fake >= threshold``. A version's
threshold is its operating point: fitted on validation images for a target false-positive rate on
real images (:func:`threshold_for_fpr`), because calling a real photograph fake is the costly
mistake, and 0.5 says nothing about how often that happens.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

CLASS_NAMES = ("real", "fake")
FPR_LEVELS = (0.01, 0.05)  # the false-positive rates ``tpr_at_fpr`` reports


def _inputs(labels, p_fake) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).ravel()
    p_fake = np.asarray(p_fake, dtype=np.float64).ravel()
    if labels.shape != p_fake.shape:
        raise ValueError(f"{labels.size} labels but {p_fake.size} probabilities")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return labels, p_fake


def classification_metrics(labels, p_fake, threshold: float = 0.5) -> dict:
    """Accuracy, ROC AUC, ECE, Brier, per-class precision/recall/F1/support, confusion matrix.

    ``confusion_matrix`` is ``[[real as real, real as fake], [fake as real, fake as fake]]``;
    ``roc_auc`` is None when only one class is present. All values are plain Python numbers.
    """
    labels, p_fake = _inputs(labels, p_fake)
    predicted = (p_fake >= threshold).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=[0, 1], zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(CLASS_NAMES)
    }
    two_classes = len(np.unique(labels)) == 2
    return {
        "n": int(labels.size),
        "threshold": float(threshold),
        "operating_point": operating_point(labels, p_fake, threshold),
        "tpr_at_fpr": tpr_at_fpr(labels, p_fake) if two_classes else None,
        "average_precision": float(average_precision_score(labels, p_fake))
        if two_classes
        else None,
        "accuracy": float(accuracy_score(labels, predicted)) if labels.size else None,
        "roc_auc": float(roc_auc_score(labels, p_fake)) if two_classes else None,
        "ece": expected_calibration_error(labels, p_fake) if labels.size else None,
        "brier": float(brier_score_loss(labels, p_fake, pos_label=1)) if labels.size else None,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
    }


def expected_calibration_error(labels, p_fake, bins: int = 15) -> float:
    """Top-label ECE: confidence of the verdict against how often the verdict is right.

    Confidence is ``max(p_fake, 1 - p_fake)``, grouped into ``bins`` equal-width bins over
    [0, 1] as in Guo et al. (2017); the gaps are weighted by each bin's share of images.
    """
    labels, p_fake = _inputs(labels, p_fake)
    if labels.size == 0:
        return 0.0
    predicted = (p_fake >= 0.5).astype(np.int64)
    confidence = np.where(predicted == 1, p_fake, 1.0 - p_fake)
    correct = (predicted == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def reliability_curve(labels, p_fake, bins: int = 10) -> dict:
    """Per-bin mean p_fake against the fraction that is really fake, with counts (for plots)."""
    labels, p_fake = _inputs(labels, p_fake)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p_fake, edges[1:-1], right=True), 0, bins - 1)
    rows = {"bin_lower": [], "bin_upper": [], "mean_p_fake": [], "fraction_fake": [], "count": []}
    for b in range(bins):
        members = which == b
        rows["bin_lower"].append(float(edges[b]))
        rows["bin_upper"].append(float(edges[b + 1]))
        rows["count"].append(int(members.sum()))
        rows["mean_p_fake"].append(float(p_fake[members].mean()) if members.any() else None)
        rows["fraction_fake"].append(float(labels[members].mean()) if members.any() else None)
    return rows


def roc_points(labels, p_fake) -> dict | None:
    """False and true positive rates (FAKE is positive) at each threshold; None with one class."""
    labels, p_fake = _inputs(labels, p_fake)
    if len(np.unique(labels)) < 2:
        return None
    fpr, tpr, thresholds = roc_curve(labels, p_fake, pos_label=1)
    thresholds = np.minimum(thresholds, 1.0)  # sklearn puts +inf first
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}


THRESHOLD_MARGIN = 1e-4  # above fp32 recomputation noise (~1e-7), far below any real gap


def threshold_for_fpr(labels, p_fake, target_fpr: float) -> float:
    """The lowest FAKE threshold whose false-positive rate on the real images is <= target.

    With n real images at most ``floor(target_fpr * n)`` of them may score at or above it, so
    the threshold sits above the next-highest real score: halfway to the next score above it,
    at most ``THRESHOLD_MARGIN`` higher, so that the same images scored again (another batch
    size, another engine within fp32's tolerance) stay on the same side of it. Returns 0.5 when
    either class is missing (nothing to fit on).
    """
    labels, p_fake = _inputs(labels, p_fake)
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"the target false-positive rate must be in [0, 1), got {target_fpr}")
    real = np.sort(p_fake[labels == 0])[::-1]
    if real.size == 0 or not (labels == 1).any():
        return 0.5
    allowed = int(np.floor(target_fpr * real.size + 1e-9))
    if allowed >= real.size:
        return float(real[-1])
    highest_real = float(real[allowed])
    above = p_fake[p_fake > highest_real]
    gap = float(above.min()) - highest_real if above.size else THRESHOLD_MARGIN * 2
    return min(highest_real + min(gap / 2, THRESHOLD_MARGIN), float(np.nextafter(1.0, 2.0)))


def fit_operating_point(labels, p_fake, target_fpr: float) -> tuple[float, dict]:
    """A version's operating point from its validation images: the FAKE threshold fitted for
    ``target_fpr`` (:func:`threshold_for_fpr`) and the images' metrics at it, ``target_fpr``
    recorded with them. Without images: 0.5 and ``{"n": 0, "target_fpr": ...}``."""
    labels, p_fake = _inputs(labels, p_fake)
    target_fpr = float(target_fpr)
    if labels.size == 0:
        return 0.5, {"n": 0, "target_fpr": target_fpr}
    threshold = threshold_for_fpr(labels, p_fake, target_fpr)
    metrics = classification_metrics(labels, p_fake, threshold)
    return threshold, {**metrics, "target_fpr": target_fpr}


def operating_point(labels, p_fake, threshold: float) -> dict:
    """The ROC point of a threshold: false-positive rate on real, true-positive rate on fake."""
    labels, p_fake = _inputs(labels, p_fake)
    flagged = p_fake >= threshold
    real, fake = labels == 0, labels == 1
    return {
        "threshold": float(threshold),
        "fpr": float(flagged[real].mean()) if real.any() else None,
        "tpr": float(flagged[fake].mean()) if fake.any() else None,
    }


def tpr_at_fpr(labels, p_fake, levels=FPR_LEVELS) -> dict | None:
    """The best true-positive rate reachable at each false-positive rate in ``levels`` (keys are
    the rates as strings, ``{"0.01": ..., "0.05": ...}``); None with one class."""
    points = roc_points(labels, p_fake)
    if points is None:
        return None
    fpr, tpr = np.asarray(points["fpr"]), np.asarray(points["tpr"])
    return {f"{level:g}": float(tpr[fpr <= level + 1e-12].max()) for level in levels}
