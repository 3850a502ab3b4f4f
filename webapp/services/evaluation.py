"""Measuring a version on a set of labelled images, with scikit-learn metrics from ``model``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select

from model.metrics import classification_metrics

from ..extensions import db
from ..models import ModelVersion, Prediction
from . import versions
from .pixel_cache import load_pixels
from .scoring import score_batch, tuned_predictor
from .trainset import labelled_images


def evaluate_arrays(
    checkpoint_path, image_ids: Sequence[int], labels: np.ndarray, image_size: int
) -> dict[str, Any]:
    """Metrics of a checkpoint on the given images (run through the network, batch by batch)."""
    if len(image_ids) == 0:
        return {"n": 0}
    predictor = tuned_predictor(checkpoint_path)
    ids = list(image_ids)
    batch = score_batch()
    p_fake = np.concatenate(
        [
            predictor.predict(load_pixels(ids[i : i + batch], image_size)).p_fake
            for i in range(0, len(ids), batch)
        ]
    )
    return classification_metrics(np.asarray(labels), p_fake)


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
        metrics = classification_metrics(labels, p_fake)
    return {"version": version.name, "dataset": dataset_name, **metrics}
