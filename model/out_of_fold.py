"""Out-of-fold probabilities from networks: every image scored by a network that never saw it.

A network scores its own training images as it was taught, mislabelled ones included, so its
p_fake cannot reveal their label mistakes (the issue measured it: trained on 5% flipped labels,
the queue's first 200 items held 36% of the flips). Training K networks, each without one fold
and scoring that fold, gives honest probabilities for all of them; confident learning
(``model.confident``) then ranks the mistakes. The networks train with the same recipe as the
version, usually smaller and shorter: their job is ranking, not being deployed. Where a fold
holds too few images for the version's batch size (the ``cifake`` preset's 256 leaves 12 steps an
epoch on 3,200 images), :func:`fold_recipe` makes the batch smaller.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from sklearn.model_selection import StratifiedKFold

from model.calibration import apply_temperature
from model.config import TrainConfig
from model.train import resolved_precision, train


def fold_assignment(labels, folds: int, seed: int = 0) -> np.ndarray:
    """The fold (0..K-1) of each image: stratified, shuffled with ``seed``."""
    labels = np.asarray(labels, dtype=np.int64)
    smallest = int(np.bincount(labels, minlength=2).min())
    if folds < 2 or smallest < folds:
        raise ValueError(
            f"{folds} folds need at least {max(folds, 2)} images of each class (have {smallest})"
        )
    assignment = np.empty(labels.size, dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(labels.size), labels)):
        assignment[held] = fold
    return assignment


MIN_STEPS_PER_EPOCH = 50
SMALLEST_BATCH = 32


def fold_recipe(config: TrainConfig, fit_images: int, min_steps: int = MIN_STEPS_PER_EPOCH):
    """The recipe of a held-out network that trains on ``fit_images`` images.

    The version's, with the batch halved (down to 32) until an epoch has ``min_steps`` steps, and
    the learning rate scaled by the square root of the batch ratio, the usual rule for Adam (256
    at 3e-3 becomes 128 at 2.1e-3, the batch-128 recipe's 2e-3). A network on a few thousand
    images learns from its steps: on 4,000 CIFAKE images with 5% of labels flipped the held-out
    networks put 35% of the flips in the first 5% at batch 256 (12 steps an epoch) and 54% at 64
    (``bench/noise_bench.py``, README). ``min_steps`` 0 keeps the version's batch.
    """
    batch = config.batch_size
    while batch > SMALLEST_BATCH and fit_images // batch < min_steps:
        batch //= 2
    if batch == config.batch_size:
        return config
    return replace(config, batch_size=batch, lr=config.lr * math.sqrt(batch / config.batch_size))


def out_of_fold_p_fake(
    images: np.ndarray,
    labels,
    config: TrainConfig,
    mean,
    std,
    folds: int = 5,
    on_fold: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    min_steps: int = MIN_STEPS_PER_EPOCH,
    resolve: Callable[[TrainConfig], TrainConfig] | None = None,
) -> np.ndarray:
    """p_fake of each image (uint8 (N, S, S, 3)) from the network trained on the other folds.

    The probabilities are the held-out networks' plain softmax (temperature 1): fitting a
    temperature on the held-out labels would let them leak into their own scores. Each network
    trains with :func:`fold_recipe` (``min_steps``), all in the precision ``precision="auto"``
    resolves to for the first (``resolve``; default ``model.train.resolved_precision``, timed
    steps). ``on_fold(done, folds)`` reports progress;
    ``should_stop`` ends the run (TrainingStopped).
    """
    labels = np.asarray(labels, dtype=np.int64)
    assignment = fold_assignment(labels, folds, config.seed)
    p_fake = np.full(labels.size, np.nan)
    first = None  # the first fold's resolved precision, which every fold then trains in
    for fold in range(folds):
        held = np.flatnonzero(assignment == fold)
        fit = np.flatnonzero(assignment != fold)
        recipe = fold_recipe(config, fit.size, min_steps)
        first = first or (resolve or resolved_precision)(recipe)
        recipe = replace(recipe, precision=first.precision, small_conv_grad=first.small_conv_grad)
        result = train(
            images[fit],
            labels[fit],
            images[held],
            labels[held],
            recipe,
            mean,
            std,
            should_stop=should_stop,
        )
        p_fake[held] = apply_temperature(result.val_logits, 1.0)
        if on_fold is not None:
            on_fold(fold + 1, folds)
    return p_fake
