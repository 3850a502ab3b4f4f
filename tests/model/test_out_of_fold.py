"""Out-of-fold network probabilities on tiny separable images, some labels flipped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.confident import rank_label_issues
from model.config import TrainConfig
from model.out_of_fold import fold_assignment, fold_recipe, out_of_fold_p_fake
from tests.model.conftest import tiny_config


def test_folds_are_stratified_and_cover_every_image():
    labels = np.array([0] * 10 + [1] * 6)
    assignment = fold_assignment(labels, 3)
    assert sorted(set(assignment.tolist())) == [0, 1, 2]
    for fold in range(3):
        assert set(labels[assignment == fold].tolist()) == {0, 1}
    with pytest.raises(ValueError, match="at least 5 images of each class"):
        fold_assignment(np.array([0] * 10 + [1] * 4), 5)


def test_held_out_networks_disagree_with_flipped_labels(tiny_data, flipped_tiny):
    images, truth, given, flipped = flipped_tiny
    reports = []
    p_fake = out_of_fold_p_fake(
        images,
        given,
        tiny_config(epochs=6),
        *tiny_data[4:],
        folds=2,
        on_fold=lambda done, total: reports.append((done, total)),
    )
    assert reports == [(1, 2), (2, 2)]
    assert not np.isnan(p_fake).any() and ((p_fake >= 0) & (p_fake <= 1)).all()
    # The networks learn the truth from the other fold, so they side with it on the flips.
    assert ((p_fake >= 0.5) == truth.astype(bool)).mean() >= 0.8
    top = rank_label_issues(given, p_fake)[:6]
    assert np.isin(flipped, top).sum() >= 2


def test_a_fold_too_small_for_the_batch_trains_with_a_smaller_one():
    cifake = TrainConfig.preset("cifake")
    assert cifake.batch_size == 256
    small = fold_recipe(cifake, 3_200)  # 4,000 images in 5 folds: 12 steps an epoch at 256
    assert small.batch_size == 64 and 3_200 // small.batch_size >= 50
    assert small.lr == pytest.approx(cifake.lr * math.sqrt(64 / 256))
    assert {k: v for k, v in vars(small).items() if k not in ("batch_size", "lr")} == {
        k: v for k, v in vars(cifake).items() if k not in ("batch_size", "lr")
    }
    assert fold_recipe(cifake, 32_000) is cifake  # 125 steps an epoch already
    assert fold_recipe(cifake, 3_200, min_steps=0) is cifake
    assert fold_recipe(cifake, 100).batch_size == 32  # never below 32
