"""The fast refresh: retrain only the classifier head of the active version on cached features.

The backbone is unchanged, so the penultimate features that scoring stored for every image are
still exact: fitting a logistic-regression head on them takes seconds, and the new version
scores every image from the same features without running the network again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import current_app

from model.checkpoint import load_checkpoint, save_checkpoint
from model.head import HeadFit, fit_head_on_splits

from ...models import ModelVersion
from ..records import versions
from .oof_training import queue_after_training
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
    context.log(f"fitting a head on {len(parts['train'][0])} cached features of {parent.name}")
    fitted = fit_head_on_splits(
        {name: (features[_rows(position, ids)], labels) for name, (ids, labels) in parts.items()},
        float(current_app.config["TARGET_FPR"]),
    )
    version = _register(context, parent, trainset, fitted)
    queue_after_training(version, context.params)
    return {"version": version.name, "active": version.is_active, "metrics": fitted.metrics}


def _register(context, parent, trainset, fitted: HeadFit) -> ModelVersion:
    temperature, threshold, metrics = fitted.temperature, fitted.threshold, fitted.metrics
    model, meta = load_checkpoint(parent.checkpoint_path)
    fitted.head.apply_to(model)
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
