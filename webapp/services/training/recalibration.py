"""Recalibration on a labelled evaluation set: the same network, a refitted temperature and
FAKE threshold, recorded as a new version.

A threshold fitted on the training data's validation split rarely holds on images from another
source (the study's advice: distrust it on new data). ``calibrate_on_dataset`` refits both on a
dataset the admin labelled for the purpose, so the operating point (the false-positive rate on
real images) is the one measured there. The parent version is untouched; the new one is
activated like any other.
"""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
from flask import current_app

from model.calibration import apply_temperature, fit_temperature
from model.checkpoint import load_checkpoint, save_checkpoint
from model.metrics import fit_operating_point

from ...models import ModelVersion
from ..importing.pixels import pixels_for
from ..records import versions
from .evaluation import evaluate_arrays
from .scoring import chunks, get_predictor, score_batch
from .trainset import labelled_images, select_training_set


def version_logits(version: ModelVersion, image_ids) -> np.ndarray:
    """The version's raw (uncalibrated) logits for ``image_ids``, batch by batch."""
    predictor = get_predictor(version)
    parts = [
        predictor.predict(pixels_for(predictor.meta, chunk)).logits.astype(np.float64)
        for chunk in chunks(list(image_ids), score_batch())
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 2))


def calibrate_on_dataset(
    dataset_name: str, version_name: str | None = None, target_fpr: float | None = None
) -> ModelVersion:
    """Refit temperature and threshold of a version (active by default) on every labelled image
    of ``dataset_name``; register the result as a new version (kind ``calib``).

    ValueError (nothing recorded) when the dataset lacks labelled images of either class.
    """
    parent = versions.get_version(version_name)
    target = float(current_app.config["TARGET_FPR"] if target_fpr is None else target_fpr)
    if not 0.0 <= target < 1.0:
        raise ValueError(f"the target false-positive rate must be in [0, 1), got {target}")
    ids, labels = labelled_images(dataset_name).as_arrays()
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2)
    if counts.min() == 0:
        raise ValueError(
            f"dataset {dataset_name!r} needs labelled images of both classes to calibrate on "
            f"(has {counts[0]} real, {counts[1]} fake)"
        )
    logits = version_logits(parent, ids)
    temperature = fit_temperature(logits, labels)
    p_fake = apply_temperature(logits, temperature)
    threshold, measured = fit_operating_point(labels, p_fake, target)
    calibration = {**measured, "dataset": dataset_name}
    return _register(parent, temperature, threshold, calibration)


def _register(parent: ModelVersion, temperature: float, threshold: float, calibration: dict):
    """Save the parent's network with the new temperature under a new name and add its row,
    measured on the parent's validation images and the current test split at the new threshold."""
    name = versions.next_version_name()
    path = versions.models_dir() / f"{name}.pt"
    network, meta = load_checkpoint(parent.checkpoint_path)
    meta = {
        **meta,
        "version": name,
        "temperature": float(temperature),
        "threshold": float(threshold),
        "calibration_of": parent.name,
        "calibrated_on": calibration["dataset"],
    }
    save_checkpoint(path, network, meta)
    _copy_training_labels(parent.name, name)
    metrics = {"calibration": calibration, **_splits(parent, path, threshold)}
    return versions.register_child(
        parent,
        name,
        "calib",
        path,
        temperature=float(temperature),
        threshold=float(threshold),
        train_args={
            "calibration_of": parent.name,
            "calibrated_on": calibration["dataset"],
            "target_fpr": calibration["target_fpr"],
        },
        metrics=metrics,
        train_set_sha256=parent.train_set_sha256,
        n_train=parent.n_train,
        labels_changed=parent.labels_changed,
    )


def _copy_training_labels(parent_name: str, name: str) -> None:
    """The new version was trained on exactly its parent's images (OOD scores and label
    movement read this file)."""
    source = versions.training_labels_path(parent_name)
    if source.exists():
        shutil.copyfile(source, versions.training_labels_path(name))


def _splits(parent: ModelVersion, path, threshold: float) -> dict[str, Any]:
    """Metrics of the recalibrated checkpoint on the parent's val images and the test split."""
    saved = versions.training_labels(parent)
    test = select_training_set((parent.train_args or {}).get("datasets") or None).test
    parts = {"val": (saved["val_ids"].tolist(), saved["val_labels"])}
    parts["test"] = test.as_arrays()
    return {
        name: evaluate_arrays(path, ids, labels, parent.image_size, threshold)
        for name, (ids, labels) in parts.items()
        if len(ids)
    }
