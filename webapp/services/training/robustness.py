"""Robustness measured: a version scored on re-encoded or rescaled copies of a dataset's images.

The copies are made on the fly from the stored originals (``model.perturb.perturb_image``) and go
through the same resize as the pixel cache, so the only difference from the clean evaluation is
the perturbation. Nothing is written: the perturbed pixels live for one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from model.images import resize_for_model
from model.metrics import classification_metrics
from model.perturb import PERTURBATIONS, perturb_image

from ...extensions import db
from ...models import Image
from ..records import versions
from ..storage import original_path
from .evaluation import evaluate_dataset
from .scoring import chunks, get_predictor, score_batch
from .trainset import labelled_images


def perturbed_pixels(image_ids: Sequence[int], size: int, perturbation: str, mode=None):
    """(N, size, size, 3) uint8: each original perturbed, then resized as the cache does; for a
    version trained on crops (``mode``, a ``model.crops.InputMode``), a list of the perturbed
    images at the scale its crops are taken from."""
    if mode is not None and mode.crops:
        from model.crops import native_pixels

        return [native_pixels(image, mode) for image in _perturbed(image_ids, perturbation)]
    pixels = np.empty((len(image_ids), size, size, 3), dtype=np.uint8)
    for row, image in enumerate(_perturbed(image_ids, perturbation)):
        pixels[row] = resize_for_model(image, size)
    return pixels


def _perturbed(image_ids: Sequence[int], perturbation: str):
    """Each original of ``image_ids`` (in order), decoded and perturbed."""
    images = {
        image.id: image
        for image in db.session.scalars(select(Image).where(Image.id.in_(list(image_ids))))
    }
    for image_id in image_ids:
        path = original_path(images[image_id])
        try:
            with PILImage.open(path) as original:
                yield perturb_image(original, perturbation)
        except OSError as error:
            raise ValueError(f"image {image_id}: its original {path} cannot be read") from error


def perturbed_p_fake(version, image_ids: Sequence[int], perturbation: str) -> np.ndarray:
    """p(fake) of ``version`` on perturbed copies of ``image_ids`` (in order), batch by batch."""
    predictor = get_predictor(version)
    return np.concatenate(
        [
            predictor.predict(
                perturbed_pixels(chunk, version.image_size, perturbation, predictor.input_mode)
            ).p_fake
            for chunk in chunks(list(image_ids), score_batch())
        ]
    )


def evaluate_perturbed(
    dataset_name: str, perturbation: str, version_name: str | None = None
) -> dict[str, Any]:
    """Metrics of a version on perturbed copies of a dataset's labelled images, beside the clean
    figures (``clean``) of the same images, so the loss reads at a glance."""
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {perturbation!r}: use {', '.join(PERTURBATIONS)}")
    version = versions.get_version(version_name)
    ids, labels = labelled_images(dataset_name).as_arrays()
    clean = evaluate_dataset(dataset_name, version.name)
    if len(ids) == 0:
        return {**clean, "perturb": perturbation}
    p_fake = perturbed_p_fake(version, ids.tolist(), perturbation)
    metrics = classification_metrics(labels, p_fake, version.threshold)
    clean_summary = {key: clean[key] for key in ("accuracy", "roc_auc", "tpr_at_fpr")}
    return {
        "version": version.name,
        "dataset": dataset_name,
        "perturb": perturbation,
        **metrics,
        "clean": clean_summary,
    }
