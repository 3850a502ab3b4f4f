"""Near duplicates: stored images whose perceptual hash is within a small Hamming distance.

Candidates come from the four indexed 16-bit bands of ``image_evidence`` (each band equal to one
of the query's bands or one bit away from it), then the exact distance is computed for those few.
Two hashes within distance 7 always share a band within one bit, so no near duplicate within the
configured distance (at most 7) is missed, and at 100,000 images a look-up reads a few dozen rows.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import or_, select

from ...extensions import db
from ...models import Dataset, Image, ImageEvidence, Prediction
from ..records import labels, versions
from . import phash

MAX_DISTANCE = 7  # what the band look-up guarantees to find


def candidates(hash_value: int, exclude: int | None = None) -> list[tuple[int, int]]:
    """(image id, Hamming distance) of every stored image within ``MAX_DISTANCE``."""
    columns = [getattr(ImageEvidence, f"phash_band{i}") for i in range(phash.BANDS)]
    probes = [
        column.in_(phash.neighbours(band))
        for column, band in zip(columns, phash.bands(hash_value), strict=True)
    ]
    statement = select(ImageEvidence.image_id, ImageEvidence.phash).where(or_(*probes))
    if exclude is not None:
        statement = statement.where(ImageEvidence.image_id != exclude)
    found = []
    for image_id, stored in db.session.execute(statement):
        distance = phash.hamming(hash_value, phash.from_signed(stored))
        if distance <= MAX_DISTANCE:
            found.append((image_id, distance))
    return sorted(found, key=lambda pair: (pair[1], pair[0]))


def find(hash_value: int | None, exclude: int | None = None, limit: int = 20) -> list[dict]:
    """The near duplicates within ``NEAR_DUPLICATE_DISTANCE``, closest first, each with its
    dataset, label, the active version's verdict and the reviewers' decision."""
    if hash_value is None:
        return []
    within = min(int(current_app.config.get("NEAR_DUPLICATE_DISTANCE", 6)), MAX_DISTANCE)
    pairs = [pair for pair in candidates(hash_value, exclude) if pair[1] <= within][:limit]
    if not pairs:
        return []
    ids = [image_id for image_id, _ in pairs]
    return [
        describe(row, distance) for row, distance in zip(_rows(ids), _distances(pairs), strict=True)
    ]


def _distances(pairs: list[tuple[int, int]]) -> list[int]:
    return [distance for _, distance in pairs]


def _rows(ids: list[int]) -> list[dict[str, Any]]:
    """Image, dataset, verdict and decision of each id, in the order of ``ids``."""
    version = versions.active_version()
    statement = (
        select(Image.id, Image.file_name, Image.label, Dataset.name)
        .join(Dataset, Dataset.id == Image.dataset_id)
        .where(Image.id.in_(ids))
    )
    rows = {row.id: row for row in db.session.execute(statement)}
    verdicts = {}
    if version is not None:
        verdicts = dict(
            db.session.execute(
                select(Prediction.image_id, Prediction.verdict).where(
                    Prediction.model_version_id == version.id, Prediction.image_id.in_(ids)
                )
            ).all()
        )
    states = labels.review_states(ids)
    return [
        {
            "image_id": image_id,
            "file_name": rows[image_id].file_name,
            "dataset": rows[image_id].name,
            "label": labels_of(rows[image_id].label, states.get(image_id)),
            "import_label": rows[image_id].label,
            "verdict": verdicts.get(image_id),
            "decision": states[image_id].label if image_id in states else None,
            "review_status": states[image_id].status if image_id in states else "unreviewed",
        }
        for image_id in ids
    ]


def labels_of(import_label: str, state) -> str:
    """The effective label: the reviewers' consensus when there is one, else the import's."""
    return state.label if state is not None and state.label is not None else import_label


def describe(row: dict[str, Any], distance: int) -> dict[str, Any]:
    """One near duplicate as the check JSON lists it."""
    return {**row, "distance": distance}
