"""Confident learning (Northcutt et al., 2021): which given labels are probably wrong.

From out-of-sample probabilities (each image scored by a model that never saw it), an image
labelled ``i`` is *confidently* of class ``j`` when ``p_j`` reaches class ``j``'s threshold, the
mean ``p_j`` of the images labelled ``j`` (per-class thresholds absorb a model that is
over- or under-confident for one class). Counting images by (given, confident) class gives the
confident joint; the off-diagonal counts estimate how many labels of each kind are flipped, and
for each (i, j) cell that many images labelled ``i`` with the largest margin ``p_j - p_i`` are
flagged ("prune by noise rate", cleanlab's default). Flagged images come first in the ranking,
each group ordered by self-confidence (lowest probability of the given label first).

Two classes here (0 real, 1 fake), but nothing below depends on that.
"""

from __future__ import annotations

import numpy as np


def _inputs(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim == 1:  # p_fake: make it (N, 2)
        probabilities = np.stack([1.0 - probabilities, probabilities], axis=1)
    if probabilities.shape[0] != labels.size:
        raise ValueError(f"{labels.size} labels but {probabilities.shape[0]} probabilities")
    if labels.size and (labels.min() < 0 or labels.max() >= probabilities.shape[1]):
        raise ValueError("a label is outside the classes of the probabilities")
    return labels, probabilities


def per_class_thresholds(labels, probabilities) -> np.ndarray:
    """Class j's threshold: the mean p_j over the images labelled j (1.0 when none are)."""
    labels, probabilities = _inputs(labels, probabilities)
    classes = probabilities.shape[1]
    return np.array(
        [
            probabilities[labels == j, j].mean() if (labels == j).any() else 1.0
            for j in range(classes)
        ]
    )


def confident_joint(labels, probabilities) -> np.ndarray:
    """(classes, classes) counts of images by given class (rows) and confident class (columns);
    an image confident of no class is not counted."""
    labels, probabilities = _inputs(labels, probabilities)
    thresholds = per_class_thresholds(labels, probabilities)
    above = probabilities >= thresholds[None, :]
    masked = np.where(above, probabilities, -np.inf)
    confident = masked.argmax(axis=1)
    counted = above.any(axis=1)
    classes = probabilities.shape[1]
    joint = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(joint, (labels[counted], confident[counted]), 1)
    return joint


def find_label_issues(labels, probabilities) -> np.ndarray:
    """Boolean mask of the images whose given label confident learning flags as wrong."""
    labels, probabilities = _inputs(labels, probabilities)
    joint = confident_joint(labels, probabilities)
    counts = np.bincount(labels, minlength=probabilities.shape[1])
    # Calibrate each row of the joint to the number of images with that given label.
    row_sums = np.maximum(joint.sum(axis=1, keepdims=True), 1)
    calibrated = np.rint(joint / row_sums * counts[:, None]).astype(np.int64)
    flagged = np.zeros(labels.size, dtype=bool)
    for given in range(probabilities.shape[1]):
        members = np.flatnonzero(labels == given)
        for other in range(probabilities.shape[1]):
            take = min(int(calibrated[given, other]), members.size) if other != given else 0
            if take <= 0:
                continue
            margin = probabilities[members, other] - probabilities[members, given]
            flagged[members[np.argsort(-margin, kind="stable")[:take]]] = True
    return flagged


def self_confidence(labels, probabilities) -> np.ndarray:
    """The out-of-sample probability of each image's given label."""
    labels, probabilities = _inputs(labels, probabilities)
    return probabilities[np.arange(labels.size), labels]


def rank_label_issues(labels, probabilities) -> np.ndarray:
    """Image indices, most suspicious first: the flagged ones, then the rest, each by
    self-confidence (ties by index)."""
    flagged = find_label_issues(labels, probabilities)
    confidence = self_confidence(labels, probabilities)
    order = np.lexsort((np.arange(confidence.size), confidence, ~flagged))
    return order
