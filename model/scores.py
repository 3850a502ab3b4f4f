"""Light models on the network's penultimate features (scikit-learn): the review desk's scores.

- ``out_of_sample_probabilities``: K-fold cross-validated logistic regression, so every labelled
  image gets a p_fake from a model that never saw it (Cleanlab's advice: a network scores its own
  training images too confidently to reveal their label mistakes).
- ``label_issue_scores``: how unlikely the given label is under that out-of-sample probability.
- ``fit_head``: a logistic-regression head on cached features whose weights replace the network's
  ``fc`` (a "head-only" refresh after reviewers fix labels, in seconds instead of a retrain).
- ``OODScorer``: how far an image's features are from the training images' (k nearest neighbours,
  cosine distance), as a percentile of the training images' own distances.

Each of these fits runs with the BLAS and OpenMP thread pools held to one thread: its work is
many small matrix-vector products, where handing each one to a second thread costs more than it
saves, and where idle threads spin on a busy CPU. On the project's shared 2-core machine that
cut the CPU time of the scoring job's K-fold and OOD steps 8-25x at 400 images and never made
them slower up to 4,000 (``bench/model_bench.py --sections end_to_end`` shows the stages).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

Result = TypeVar("Result")


def single_threaded(function: Callable[..., Result]) -> Callable[..., Result]:
    """Run ``function`` with the BLAS and OpenMP pools at one thread (see the module notes)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> Result:
        with threadpool_limits(limits=1):
            return function(*args, **kwargs)

    return wrapper


def _logistic(c: float = 1.0) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=1000)


def _features_and_labels(features, labels) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"need (N, D) features and N labels, got {features.shape}, {labels.shape}")
    if len(np.unique(labels)) < 2:
        raise ValueError("both classes (real and fake) are needed to fit a classifier")
    return features, labels


@single_threaded
def out_of_sample_probabilities(features, labels, folds: int = 5, seed: int = 0) -> np.ndarray:
    """p_fake for each image from a logistic regression fitted on the other folds.

    Stratified K-fold on standardised features; ``folds`` shrinks to the smaller class's size
    when there are fewer images than folds in a class (at least 2).
    """
    features, labels = _features_and_labels(features, labels)
    smallest = int(np.bincount(labels, minlength=2).min())
    folds = max(2, min(folds, smallest))
    if smallest < 2:
        raise ValueError("each class needs at least two images for cross-validation")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    pipeline = make_pipeline(StandardScaler(), _logistic())
    probabilities = cross_val_predict(
        pipeline, features, labels, cv=splitter, method="predict_proba"
    )
    return probabilities[:, 1]


def label_issue_scores(labels, oos_p_fake) -> np.ndarray:
    """1 - out-of-sample probability of the given label, in [0, 1].

    0 means the light model fully agrees with the label; above 0.5 it prefers the other class;
    near 1 the label is very likely wrong. (Cleanlab's "self-confidence" score, inverted.)
    """
    labels = np.asarray(labels, dtype=np.int64)
    oos_p_fake = np.clip(np.asarray(oos_p_fake, dtype=np.float64), 0.0, 1.0)
    if labels.shape != oos_p_fake.shape:
        raise ValueError(f"{labels.size} labels but {oos_p_fake.size} probabilities")
    probability_of_label = np.where(labels == 1, oos_p_fake, 1.0 - oos_p_fake)
    return 1.0 - probability_of_label


@dataclass
class LinearHead:
    """Two-logit linear head on raw (unstandardised) features: ``logits = x @ weight.T + bias``."""

    weight: np.ndarray  # (2, D) float32
    bias: np.ndarray  # (2,) float32

    def logits(self, features) -> np.ndarray:
        """Logits for cached features, as the network's ``fc`` would give them."""
        return np.asarray(features, dtype=np.float32) @ self.weight.T + self.bias

    def apply_to(self, model: nn.Module) -> nn.Module:
        """Copy the head into ``model.fc`` in place (returns the model)."""
        with torch.no_grad():
            model.fc.weight.copy_(torch.from_numpy(self.weight))
            model.fc.bias.copy_(torch.from_numpy(self.bias))
        return model


@single_threaded
def fit_head(features, labels, c: float = 1.0) -> LinearHead:
    """A logistic-regression head on cached features, folded into ``fc`` form.

    The standardisation is folded into the weights and the binary logit z becomes the pair
    (-z/2, z/2), whose softmax is exactly the logistic model's probability.
    """
    features, labels = _features_and_labels(features, labels)
    scaler = StandardScaler().fit(features)
    logistic = _logistic(c).fit(scaler.transform(features), labels)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weight = logistic.coef_[0] / scale
    bias = logistic.intercept_[0] - float(np.dot(weight, scaler.mean_))
    return LinearHead(
        weight=np.stack([-weight / 2, weight / 2]).astype(np.float32),
        bias=np.array([-bias / 2, bias / 2], dtype=np.float32),
    )


def _unit_rows(features) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


class OODScorer:
    """Out-of-distribution score: mean cosine distance to the k nearest training features,
    expressed as the share of training images that are closer to their own neighbours.

    A score of 0.95 means "further from the training data than 95% of training images are".
    Training images are scored without matching themselves (``training_scores``, or
    ``score(..., exclude_self=True)``).
    """

    def __init__(self, k: int = 5, max_reference: int | None = 50_000, seed: int = 0):
        self.k, self.max_reference, self.seed = k, max_reference, seed
        self.index: NearestNeighbors | None = None
        self.reference_distances: np.ndarray | None = None
        self._training_raw: np.ndarray | None = None
        self._sampled = False

    @single_threaded
    def fit(self, train_features) -> OODScorer:
        """Index the training features (a seeded sample when there are more than max_reference)."""
        reference = _unit_rows(train_features)
        if self.max_reference and len(reference) > self.max_reference:
            keep = np.random.default_rng(self.seed).choice(
                len(reference), self.max_reference, False
            )
            reference = reference[np.sort(keep)]
            self._sampled = True
        if len(reference) < 2:
            raise ValueError("the OOD index needs at least two training images")
        self.k = min(self.k, len(reference) - 1)
        # On unit vectors, Euclidean order is cosine order: cosine = 1 - d^2 / 2.
        self.index = NearestNeighbors(n_neighbors=self.k + 1).fit(reference)
        self._training_raw = self._raw(reference, exclude_self=True)
        self.reference_distances = np.sort(self._training_raw)
        return self

    def _raw(self, unit_features: np.ndarray, exclude_self: bool) -> np.ndarray:
        distances, _ = self.index.kneighbors(unit_features, n_neighbors=self.k + int(exclude_self))
        if exclude_self:
            # Drop the image's match with itself; an image left out of a sampled index has
            # none, and then its k nearest are kept.
            is_self = distances[:, :1] < 1e-6
            distances = np.where(is_self, distances[:, 1:], distances[:, :-1])
        return (distances**2 / 2).mean(axis=1)

    def raw_distance(self, features, exclude_self: bool = False) -> np.ndarray:
        """Mean cosine distance (0..2) to the k nearest training features."""
        if self.index is None:
            raise RuntimeError("call fit() first")
        return self._raw(_unit_rows(features), exclude_self)

    def training_scores(self) -> np.ndarray | None:
        """Scores of the images given to ``fit``, in order, each without matching itself: the
        same as ``score(train_features, exclude_self=True)`` without a second neighbour search.
        None when ``fit`` indexed a sample of them (then score them with ``score``)."""
        if self._training_raw is None or self._sampled:
            return None
        return self._percentiles(self._training_raw)

    def _percentiles(self, raw: np.ndarray) -> np.ndarray:
        ranks = np.searchsorted(self.reference_distances, raw, side="right")
        return ranks / len(self.reference_distances)

    @single_threaded
    def score(self, features, exclude_self: bool = False) -> np.ndarray:
        """Percentile in [0, 1] of each image's distance among the training images' distances.

        Pass ``exclude_self=True`` when ``features`` are training images in the index.
        """
        return self._percentiles(self.raw_distance(features, exclude_self))
