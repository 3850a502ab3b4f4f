"""The fast refresh: retrain only the classifier head of the active version on cached features.

The backbone is unchanged, so the penultimate features that scoring stored for every image are
still exact: fitting a logistic-regression head on them takes seconds, and the new version
scores every image from the same features without running the network again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import current_app

from model.calibration import apply_temperature, fit_temperature
from model.checkpoint import load_checkpoint, save_checkpoint
from model.metrics import classification_metrics, threshold_for_fpr
from model.scores import fit_head

from ...jobs import submit
from ...models import ModelVersion
from ..records import versions
from .scoring import load_features
from .trainset import labels_changed_since, select_training_set


def _rows(lookup: dict[int, int], ids: list[int]) -> np.ndarray:
    return np.asarray([lookup[i] for i in ids], dtype=np.int64)


def train_head(context) -> dict[str, Any]:
    """Fit a new head for the active version on the effective labels; register it."""
    parent = versions.get_version(context.params.get("base_version"))
    ids, features = load_features(parent)
    position = {image_id: row for row, image_id in enumerate(ids.tolist())}
    trainset = select_training_set((parent.train_args or {}).get("datasets") or None)
    parts = {}
    for name, part in (("train", trainset.train), ("val", trainset.val), ("test", trainset.test)):
        kept = [(i, y) for i, y in zip(part.ids, part.labels, strict=True) if i in position]
        parts[name] = ([i for i, _ in kept], np.asarray([y for _, y in kept], dtype=np.int64))
    train_ids, train_labels = parts["train"]
    if set(train_labels.tolist()) != {0, 1}:
        raise ValueError("the train split needs scored, labelled images of both classes")
    context.log(f"fitting a head on {len(train_ids)} cached features of {parent.name}")
    head = fit_head(features[_rows(position, train_ids)], train_labels)
    val_ids, val_labels = parts["val"]
    val_logits = head.logits(features[_rows(position, val_ids)])
    temperature = fit_temperature(val_logits, val_labels) if len(val_ids) else 1.0
    target = float(current_app.config["TARGET_FPR"])
    val_p_fake = apply_temperature(val_logits, temperature)
    threshold = threshold_for_fpr(val_labels, val_p_fake, target) if len(val_ids) else 0.5
    metrics = {}
    for name, (part_ids, part_labels) in parts.items():
        if len(part_ids):
            logits = head.logits(features[_rows(position, part_ids)])
            metrics[name] = classification_metrics(
                part_labels, apply_temperature(logits, temperature), threshold
            )
    if "val" in metrics:
        metrics["val"]["target_fpr"] = target
    version = _register(context, parent, trainset, head, (temperature, threshold), metrics)
    if context.params.get("score", True):
        submit("predict", {"version": version.name})
    return {"version": version.name, "active": version.is_active, "metrics": metrics}


def _register(context, parent, trainset, head, calibration, metrics) -> ModelVersion:
    temperature, threshold = calibration
    model, meta = load_checkpoint(parent.checkpoint_path)
    head.apply_to(model)
    name = versions.next_version_name()
    path = versions.models_dir() / f"{name}.pt"
    meta = {
        **meta,
        "version": name,
        "temperature": float(temperature),
        "metrics": metrics,
        "train_set_sha256": trainset.sha256(),
        "head_of": parent.name,
    }
    save_checkpoint(path, model, meta)
    versions.save_training_labels(name, trainset)
    moved = labels_changed_since(parent)
    return versions.register_child(
        parent,
        name,
        "head",
        path,
        temperature=float(temperature),
        threshold=float(threshold),
        train_args={"head_only": True, "labels_moved": moved},
        metrics=metrics,
        train_set_sha256=trainset.sha256(),
        n_train=len(trainset.train),
        labels_changed=moved["total"] if moved else None,
        job_id=context.job_id,
    )
