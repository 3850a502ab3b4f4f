"""A head refit on cached features (``model.head``): fit, calibration, threshold and metrics."""

from __future__ import annotations

import pytest

from model.calibration import apply_temperature
from model.head import fit_head_on_splits
from model.metrics import classification_metrics
from tests.model.factories import separable_features


def _splits(seed: int = 0):
    features, labels = separable_features(count=300, seed=seed)
    return {
        "train": (features[:200], labels[:200]),
        "val": (features[200:260], labels[200:260]),
        "test": (features[260:], labels[260:]),
    }


def test_head_fit_measures_every_split_at_the_fitted_threshold():
    splits = _splits()
    fitted = fit_head_on_splits(splits, target_fpr=0.0)
    assert set(fitted.metrics) == {"train", "val", "test"}
    assert fitted.metrics["val"]["target_fpr"] == 0.0
    val_features, val_labels = splits["val"]
    val_p_fake = apply_temperature(fitted.head.logits(val_features), fitted.temperature)
    assert fitted.threshold > val_p_fake[val_labels == 0].max()  # no real image called fake
    assert fitted.metrics["val"]["operating_point"]["fpr"] == 0.0
    for name, (features, labels) in splits.items():
        p_fake = apply_temperature(fitted.head.logits(features), fitted.temperature)
        expected = classification_metrics(labels, p_fake, fitted.threshold)
        assert {k: v for k, v in fitted.metrics[name].items() if k != "target_fpr"} == expected
    assert fitted.metrics["test"]["accuracy"] > 0.9  # the clusters are well separated


def test_without_validation_images_the_head_is_uncalibrated_at_one_half():
    splits = _splits()
    features, labels = splits["train"]
    fitted = fit_head_on_splits(
        {"train": splits["train"], "val": (features[:0], labels[:0])}, target_fpr=0.01
    )
    assert (fitted.temperature, fitted.threshold) == (1.0, 0.5)
    assert set(fitted.metrics) == {"train"}


def test_a_train_split_with_one_class_is_refused():
    features, labels = _splits()["train"]
    real = labels == 0
    with pytest.raises(ValueError, match="both classes"):
        fit_head_on_splits({"train": (features[real], labels[real])}, target_fpr=0.01)
