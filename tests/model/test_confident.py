"""Confident learning on hand-made out-of-sample probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from model.confident import (
    confident_joint,
    find_label_issues,
    per_class_thresholds,
    rank_label_issues,
    self_confidence,
)

# Given labels and out-of-sample p_fake: images 2 and 6 look mislabelled.
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P_FAKE = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.7, 0.15, 0.9])


def test_thresholds_are_the_mean_probability_of_each_given_class():
    thresholds = per_class_thresholds(LABELS, P_FAKE)
    real_p = 1 - P_FAKE[:4]
    assert thresholds == pytest.approx([real_p.mean(), P_FAKE[4:].mean()])


def test_the_confident_joint_counts_given_against_confident_class():
    # real threshold = mean(0.9, 0.8, 0.1, 0.7) = 0.625; fake threshold = 0.6375.
    # Labelled real: 0, 1, 3 confidently real (p_real 0.9, 0.8, 0.7), 2 confidently fake (0.9).
    # Labelled fake: 4, 5, 7 confidently fake; 6 has p_real 0.85: confidently real.
    assert confident_joint(LABELS, P_FAKE).tolist() == [[3, 1], [1, 3]]


def test_the_flagged_images_are_the_planted_mistakes_and_come_first():
    assert np.flatnonzero(find_label_issues(LABELS, P_FAKE)).tolist() == [2, 6]
    order = rank_label_issues(LABELS, P_FAKE)
    assert order[:2].tolist() == [2, 6]  # p(given) 0.1 then 0.15
    assert sorted(order.tolist()) == list(range(8))
    assert self_confidence(LABELS, P_FAKE)[order[2:]].tolist() == sorted(
        self_confidence(LABELS, P_FAKE)[order[2:]].tolist()
    )


def test_flagging_finds_most_random_flips_of_a_decent_model():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 2000)
    p_fake = np.clip(np.where(truth == 1, 0.8, 0.2) + rng.normal(0, 0.15, 2000), 0, 1)
    given = truth.copy()
    flipped = rng.choice(2000, 100, replace=False)
    given[flipped] = 1 - given[flipped]
    top = rank_label_issues(given, p_fake)[:100]
    assert np.isin(top, flipped).mean() > 0.8  # random order would find 5%


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="labels but"):
        find_label_issues([0, 1], [0.5])
    with pytest.raises(ValueError, match="outside the classes"):
        find_label_issues([0, 2], [0.5, 0.5])
