"""Area under the margin (Pleiss et al., 2020): label mistakes from one network's own training.

While a network trains, an image with a right label is soon predicted with a growing margin (its
label's logit minus the largest other); a mislabelled image is pulled the other way by every
look-alike image of its true class, so its margin stays low or negative until the network
memorises it late in the run. Each image's mean margin over the epochs of one training on *all*
the images ranks label mistakes, where held-out networks (``model.out_of_fold``) each learn from
(K-1)/K of the images and cost K trainings. The margins are read from the training steps' own
logits (augmented images, training mode), so recording them costs nothing.

On 4,000 CIFAKE images with 5% of labels flipped, one 16-epoch network found more of the flips in
the first 5% than five held-out networks of 3 epochs each, in about the same time
(``bench/noise_bench.py``; the README has the figures).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from model.config import TrainConfig


def label_margins(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Each row's margin: the logit of its label minus the largest other logit."""
    logits = logits.detach().float()
    own = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf")).amax(dim=1)
    return (own - others).cpu().numpy()


class MarginRecorder:
    """Sums each training image's margin over the batches that held it."""

    def __init__(self, count: int):
        self.total = np.zeros(count)
        self.seen = np.zeros(count, dtype=np.int64)

    def add(self, indices: np.ndarray, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Record one batch: ``indices`` are its rows in the training images."""
        np.add.at(self.total, indices, label_margins(logits, labels))
        np.add.at(self.seen, indices, 1)

    def mean(self) -> np.ndarray:
        """The area under the margin of each image (its mean margin); NaN for an image no batch
        held (a run shorter than an epoch, or one dropped from every last batch)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.seen > 0, self.total / np.maximum(self.seen, 1), np.nan)


def p_fake_from_margins(margins, labels) -> np.ndarray:
    """p_fake at each image's mean margin: with two logits the label's probability is the
    logistic of its margin. An image without a margin gets 0.5 (no evidence either way)."""
    margins = np.asarray(margins, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if margins.shape != labels.shape:
        raise ValueError(f"{labels.size} labels but {margins.size} margins")
    of_label = 1.0 / (1.0 + np.exp(-np.clip(np.nan_to_num(margins, nan=0.0), -50.0, 50.0)))
    return np.where(labels == 1, of_label, 1.0 - of_label)


def margin_p_fake(
    images: np.ndarray,
    labels,
    config: TrainConfig,
    mean,
    std,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    min_steps: int | None = None,
) -> np.ndarray:
    """p_fake of each image at its area under the margin, from one network trained on all of
    them with :func:`model.out_of_fold.fold_recipe` (a batch small enough for the set;
    ``min_steps`` as there)."""
    # Imported here: model.train imports this module for MarginRecorder.
    from model.out_of_fold import MIN_STEPS_PER_EPOCH, fold_recipe
    from model.train import train

    labels = np.asarray(labels, dtype=np.int64)
    steps = MIN_STEPS_PER_EPOCH if min_steps is None else min_steps
    recipe = fold_recipe(config, labels.size, steps)
    result = train(
        images,
        labels,
        None,
        None,
        recipe,
        mean,
        std,
        on_progress=on_progress,
        should_stop=should_stop,
        record_margins=True,
    )
    return p_fake_from_margins(result.margins, labels)
