"""Measuring a version on a set of labelled images, with scikit-learn metrics from ``model``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flask import current_app
from sqlalchemy import select

from model.metrics import classification_metrics, fit_operating_point
from model.predict import reproduces

from ...extensions import db
from ...models import ModelVersion, Prediction
from ..importing.pixels import pixels_for
from ..records import versions
from .scoring import score_batch, tuned_predictor
from .trainset import labelled_images


def checkpoint_p_fake(checkpoint_path, image_ids: Sequence[int], image_size: int) -> np.ndarray:
    """Calibrated p_fake of a checkpoint on the given images, batch by batch."""
    if len(image_ids) == 0:
        return np.zeros(0)
    return _predicted_p_fake(tuned_predictor(checkpoint_path), image_ids, image_size)


def _predicted_p_fake(predictor, image_ids: Sequence[int], image_size: int) -> np.ndarray:
    ids = list(image_ids)
    if not ids:
        return np.zeros(0)
    batch = score_batch()
    return np.concatenate(
        [
            predictor.predict(pixels_for(predictor.meta, ids[i : i + batch])).p_fake
            for i in range(0, len(ids), batch)
        ]
    )


def evaluate_arrays(
    checkpoint_path,
    image_ids: Sequence[int],
    labels: np.ndarray,
    image_size: int,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Metrics of a checkpoint on the given images, verdicts at ``threshold``."""
    if len(image_ids) == 0:
        return {"n": 0}
    p_fake = checkpoint_p_fake(checkpoint_path, image_ids, image_size)
    return classification_metrics(np.asarray(labels), p_fake, threshold)


def measure_at_operating_point(
    checkpoint_path, trainset, image_size: int, trained=None, log=None
) -> tuple[float, dict]:
    """Fit the FAKE threshold on the validation split for the target false-positive rate
    (``TARGET_FPR``), and measure val and test at it: (threshold, metrics).

    ``trained`` (the ``model.train.TrainResult`` of this checkpoint, if it was trained here):
    its own validation p_fake is used when this machine's scoring engine reproduces it
    (``model.predict.reproduces``); otherwise, and for checkpoints trained elsewhere, the
    validation images are scored with the checkpoint, in the engine that will score the desk
    (measured first if this machine has not measured that size yet: ``log`` hears about it).
    """
    target = float(current_app.config["TARGET_FPR"])
    predictor = tuned_predictor(checkpoint_path, log=log)
    val_ids, val_labels = trainset.val.as_arrays()
    if (
        trained is not None
        and trained.val_p_fake is not None
        and reproduces(trained.policy, predictor)
    ):
        val_p_fake = trained.val_p_fake
    else:
        val_p_fake = _predicted_p_fake(predictor, val_ids, image_size)
    threshold, val_metrics = fit_operating_point(val_labels, val_p_fake, target)
    measured = {"val": val_metrics}
    if len(trainset.test):
        test_ids, test_labels = trainset.test.as_arrays()
        test_p_fake = _predicted_p_fake(predictor, test_ids, image_size)
        measured["test"] = classification_metrics(test_labels, test_p_fake, threshold)
    return threshold, measured


def stored_p_fake(version: ModelVersion, image_ids: Sequence[int]) -> dict[int, float]:
    """The version's stored calibrated p_fake for those images that have one."""
    rows = db.session.execute(
        select(Prediction.image_id, Prediction.p_fake).where(
            Prediction.model_version_id == version.id
        )
    )
    wanted = set(image_ids)
    return {row.image_id: row.p_fake for row in rows if row.image_id in wanted}


def evaluate_dataset(dataset_name: str, version_name: str | None = None) -> dict[str, Any]:
    """Metrics of a version (active by default) on every labelled image of a dataset.

    Stored predictions are used when the version has scored every image; otherwise the
    network runs on the missing ones.
    """
    version = versions.get_version(version_name)
    part = labelled_images(dataset_name)
    ids, labels = part.as_arrays()
    stored = stored_p_fake(version, part.ids)
    missing = [i for i in part.ids if i not in stored]
    if missing:
        from .scoring import run_network

        computed = run_network(version, missing)["p_fake"]
        stored.update(zip(missing, computed.tolist(), strict=True))
    p_fake = np.asarray([stored[i] for i in part.ids], dtype=np.float64)
    if len(ids) == 0:
        metrics: dict[str, Any] = {"n": 0}
    else:
        metrics = classification_metrics(labels, p_fake, version.threshold)
    return {"version": version.name, "dataset": dataset_name, **metrics}
