"""A head refit on cached features: the logistic head, its temperature, its FAKE threshold and its
metrics on every split, in one call that needs no network and no database.

The desk's fast refresh (``head_training``) feeds it the features a version's scoring stored; a
notebook can feed it any (N, 512) features with 0/1 labels. The backbone is unchanged, so the
features are exact and the fit takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.calibration import apply_temperature, fit_temperature
from model.metrics import classification_metrics, fit_operating_point
from model.scores import LinearHead, fit_head

SPLITS = ("train", "val", "test")


@dataclass
class HeadFit:
    """What a head refit produced: the head (``fc`` form), how it is calibrated, and its metrics
    per split (splits without images are left out; ``val`` records ``target_fpr``)."""

    head: LinearHead
    temperature: float
    threshold: float
    metrics: dict


def fit_head_on_splits(splits: dict, target_fpr: float) -> HeadFit:
    """Fit a head on ``splits["train"]``, its temperature and threshold on ``splits["val"]``, and
    measure every split at that threshold.

    ``splits`` maps "train", "val" and optionally "test" to (features, labels). With no
    validation images the temperature stays 1 and the threshold 0.5. ValueError when the train
    split lacks either class.
    """
    parts = {
        name: (np.asarray(splits[name][0], dtype=np.float32), np.asarray(splits[name][1]))
        for name in SPLITS
        if name in splits
    }
    train_features, train_labels = parts["train"]
    if set(train_labels.tolist()) != {0, 1}:
        raise ValueError("the train split needs scored, labelled images of both classes")
    head = fit_head(train_features, train_labels.astype(np.int64))
    val_features, val_labels = parts.get("val", (np.zeros((0, train_features.shape[1])), []))
    val_labels = np.asarray(val_labels, dtype=np.int64)
    val_logits = head.logits(val_features)
    temperature = fit_temperature(val_logits, val_labels) if len(val_labels) else 1.0
    val_p_fake = apply_temperature(val_logits, temperature)
    threshold, val_metrics = fit_operating_point(val_labels, val_p_fake, target_fpr)
    metrics = {}
    for name, (features, labels) in parts.items():
        if name == "val" and len(labels):
            metrics[name] = val_metrics
        elif len(labels):
            p_fake = apply_temperature(head.logits(features), temperature)
            metrics[name] = classification_metrics(labels.astype(np.int64), p_fake, threshold)
    return HeadFit(head=head, temperature=temperature, threshold=threshold, metrics=metrics)
