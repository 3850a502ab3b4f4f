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

Several networks are averaged best when they differ in more than their seed: networks of one
recipe share their mistakes (the clean images they all find hard crowd the flips out of the
first places), so by default the networks take turns over :data:`VIEWS`, the recipe as it is,
then with the finer "medium" stem, then with the NPR residual input, each seeded apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from model.config import TrainConfig

TURNS: dict[str, tuple[str, str, str]] = {
    "residual": ("residual input", "none", "npr"),
    "stem": ("stem", "imagenet", "medium"),
}
"""The recipe fields a margins network may change: field -> (its words in the job log, the usual
value, the other). A recipe with the usual value gets the other; any other value, the usual."""

VIEWS: tuple[tuple[str, ...], ...] = ((), ("stem",), ("residual",), ("residual", "stem"))
"""The fields of :data:`TURNS` each margins network changes, in turn (``varied`` networks):
none; the stem (``"medium"``); the residual input (``"npr"``); both. A fifth network starts the
turn again. The stem comes second because a medium-stem network ranked best alone (about twice
the time of an "imagenet"-stem one at 32 px); the README has the figures."""


def network_recipe(config: TrainConfig, network: int, varied: bool = True) -> TrainConfig:
    """The recipe of margins network ``network`` (0-based): seeded ``config.seed + network`` and,
    when ``varied``, with the fields of its turn in :data:`VIEWS` changed as :data:`TURNS` says."""
    changes = {}
    for field in VIEWS[network % len(VIEWS)] if varied else ():
        _, usual, other = TURNS[field]
        changes[field] = other if getattr(config, field) == usual else usual
    return replace(config, seed=config.seed + network, **changes)


def describe_recipe(recipe: TrainConfig, config: TrainConfig) -> str:
    """How a margins network's recipe differs from ``config`` in :data:`TURNS` (the job log's
    words)."""
    changes = [
        f"{words} {getattr(recipe, field)}"
        for field, (words, _, _) in TURNS.items()
        if getattr(recipe, field) != getattr(config, field)
    ]
    return " and ".join(changes) if changes else "the recipe"


def label_margins(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Each row's margin: the logit of its label minus the largest other logit."""
    logits = logits.detach().float()
    own = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf")).amax(dim=1)
    return (own - others).cpu().numpy()


class MarginRecorder:
    """Sums each training image's margin over the batches that held it, epoch by epoch."""

    def __init__(self, count: int):
        self.count = count
        self.totals: list[np.ndarray] = []  # one (total, seen) pair per epoch, in order
        self.seens: list[np.ndarray] = []

    def add(
        self, indices: np.ndarray, logits: torch.Tensor, labels: torch.Tensor, epoch: int = 1
    ) -> None:
        """Record one batch of ``epoch`` (1-based): ``indices`` are its rows in the images."""
        while len(self.totals) < epoch:
            self.totals.append(np.zeros(self.count))
            self.seens.append(np.zeros(self.count, dtype=np.int64))
        np.add.at(self.totals[epoch - 1], indices, label_margins(logits, labels))
        np.add.at(self.seens[epoch - 1], indices, 1)

    def mean(self) -> np.ndarray:
        """The area under the margin of each image (its mean margin over the run); NaN for an
        image no batch held (a run shorter than an epoch, or one dropped from every last batch)."""
        total = sum(self.totals, np.zeros(self.count))
        seen = sum(self.seens, np.zeros(self.count, dtype=np.int64))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(seen > 0, total / np.maximum(seen, 1), np.nan)

    def by_epoch(self) -> np.ndarray:
        """(epochs, images): each image's mean margin within each epoch (NaN where none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.array(
                [
                    np.where(seen > 0, total / np.maximum(seen, 1), np.nan)
                    for total, seen in zip(self.totals, self.seens, strict=True)
                ]
            ).reshape(len(self.totals), self.count)


def p_fake_from_margins(margins, labels) -> np.ndarray:
    """p_fake at each image's mean margin: with two logits the label's probability is the
    logistic of its margin. An image without a margin gets 0.5 (no evidence either way)."""
    margins = np.asarray(margins, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if margins.shape != labels.shape:
        raise ValueError(f"{labels.size} labels but {margins.size} margins")
    of_label = 1.0 / (1.0 + np.exp(-np.clip(np.nan_to_num(margins, nan=0.0), -50.0, 50.0)))
    return np.where(labels == 1, of_label, 1.0 - of_label)


def training_margins(
    images: np.ndarray,
    labels,
    config: TrainConfig,
    mean,
    std,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    min_steps: int | None = None,
    networks: int = 1,
    runs: list | None = None,
    varied: bool = True,
    resolve: Callable[[TrainConfig], TrainConfig] | None = None,
) -> np.ndarray:
    """Each image's area under the margin (its mean margin over a training on all the images),
    averaged over ``networks`` networks; :func:`p_fake_from_margins` turns it into p_fake.

    Each network trains with :func:`model.out_of_fold.fold_recipe` (a batch small enough for the
    set; ``min_steps`` as there), seeded ``config.seed``, ``config.seed + 1``, ... and, when
    ``varied``, taking turns over :data:`VIEWS` (:func:`network_recipe`): more than one averages
    out the mistakes of a single run, for that many trainings' time. ``precision="auto"`` is
    resolved by ``resolve`` (default ``model.train.resolved_precision``: timed steps) once per
    network of its own stem and residual input, so networks of one architecture train in one
    precision and a medium-stem network in what is fastest for it (bf16 can win there where it
    loses for the usual stem). Progress counts the epochs of all the networks together; each
    training's result is appended to ``runs`` when given. NaN for an image no network's batches
    held."""
    # Imported here: model.train imports this module for MarginRecorder.
    from model.out_of_fold import MIN_STEPS_PER_EPOCH, fold_recipe
    from model.train import resolved_precision, train

    if networks < 1:
        raise ValueError(f"networks must be at least 1, not {networks}")
    labels = np.asarray(labels, dtype=np.int64)
    steps = MIN_STEPS_PER_EPOCH if min_steps is None else min_steps
    resolve = resolve or resolved_precision
    recipe = fold_recipe(config, labels.size, steps)
    precisions: dict[tuple[str, str], TrainConfig] = {}  # one per architecture
    margins: list[np.ndarray] = []
    for network in range(networks):
        turn = network_recipe(recipe, network, varied)
        architecture = (turn.stem, turn.residual)
        if architecture not in precisions:
            precisions[architecture] = resolve(turn)
        chosen = precisions[architecture]
        result = train(
            images,
            labels,
            None,
            None,
            replace(turn, precision=chosen.precision, small_conv_grad=chosen.small_conv_grad),
            mean,
            std,
            on_progress=_all_epochs(on_progress, network, networks),
            should_stop=should_stop,
            record_margins=True,
        )
        margins.append(result.margins)
        if runs is not None:
            runs.append(result)
    return average_margins(margins)


def average_margins(margins: list[np.ndarray]) -> np.ndarray:
    """Each image's mean margin over the networks that hold one (NaN where none does)."""
    stacked = np.array(margins)
    held = (~np.isnan(stacked)).sum(axis=0)
    return np.where(held > 0, np.nansum(stacked, axis=0) / np.maximum(held, 1), np.nan)


def _all_epochs(on_progress, network: int, networks: int):
    """``on_progress`` with each epoch counted among the epochs of all ``networks``."""
    if on_progress is None or networks == 1:
        return on_progress

    def report(update: dict) -> None:
        if "epoch" in update and "epochs" in update:
            epochs = int(update["epochs"])
            update = {
                **update,
                "epoch": network * epochs + int(update["epoch"]),
                "epochs": networks * epochs,
            }
        on_progress(update)

    return report
