"""Deleting and archiving datasets.

Deleting a dataset removes the images that belong to it alone, with their predictions, queue
entries, leases, evidence and review decisions (copied into the audit trail first, so no decision
is lost from the record), their stored files, and what was derived from them outside their rows
(pixel-cache rows, stored features, out-of-fold scores, heatmaps: :mod:`.image_leftovers`).
Images it shares with other datasets stay; only its membership goes. Archiving keeps everything
but takes the dataset out of reviewers' filters and out of new trainings; it can be undone.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update

from ...extensions import db
from ...models import (
    Check,
    Dataset,
    DatasetImage,
    Image,
    ImageEvidence,
    ImportRun,
    Lease,
    Prediction,
    QueueEntry,
    ReviewDecision,
    ReviewRequest,
    User,
    utcnow,
)
from ..records import audit_trail
from ..storage import original_path, thumbnail_path
from . import image_leftovers

CHUNK = 2000


@dataclass(frozen=True)
class DeletionCounts:
    """What deleting a dataset would remove (the confirmation page says these numbers)."""

    images: int  # deleted with the dataset: in no other dataset
    shared: int  # stay: also in another dataset
    predictions: int
    decisions: int


def _members(dataset_id: int):
    return select(DatasetImage.image_id).where(DatasetImage.dataset_id == dataset_id)


def _only_here(dataset_id: int) -> list[int]:
    """Images of this dataset that belong to no other dataset."""
    elsewhere = select(DatasetImage.image_id).where(DatasetImage.dataset_id != dataset_id)
    owned = select(Image.id).where(Image.dataset_id == dataset_id)
    statement = select(Image.id).where(
        (Image.id.in_(_members(dataset_id)) | Image.id.in_(owned)), ~Image.id.in_(elsewhere)
    )
    return list(db.session.scalars(statement.order_by(Image.id)))


def _count_in(column, ids: list[int]) -> int:
    total = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        total += db.session.scalar(select(func.count()).where(column.in_(chunk))) or 0
    return total


def deletion_counts(dataset: Dataset) -> DeletionCounts:
    """How many images, predictions and decisions deleting ``dataset`` would remove."""
    doomed = _only_here(dataset.id)
    members = db.session.scalar(
        select(func.count()).select_from(DatasetImage).where(DatasetImage.dataset_id == dataset.id)
    )
    return DeletionCounts(
        images=len(doomed),
        shared=max(0, (members or 0) - len(doomed)),
        predictions=_count_in(Prediction.image_id, doomed),
        decisions=_count_in(ReviewDecision.image_id, doomed),
    )


def delete_dataset(dataset: Dataset, user: User | None) -> DeletionCounts:
    """Delete ``dataset`` and the images only it holds (see the module docstring); one
    transaction for the rows, then the files of the deleted images."""
    counts = deletion_counts(dataset)
    doomed = _only_here(dataset.id)
    files = [
        (original_path(image), thumbnail_path(image.sha256))
        for start in range(0, len(doomed), CHUNK)
        for image in db.session.scalars(
            select(Image).where(Image.id.in_(doomed[start : start + CHUNK]))
        )
    ]
    audit_trail.copy_decisions(doomed, reason=f"dataset {dataset.name} deleted")
    _rehome_shared_images(dataset.id)
    for start in range(0, len(doomed), CHUNK):
        _delete_image_rows(doomed[start : start + CHUNK])
    db.session.execute(delete(DatasetImage).where(DatasetImage.dataset_id == dataset.id))
    db.session.execute(
        update(ImportRun).where(ImportRun.dataset_id == dataset.id).values(dataset_id=None)
    )
    audit_trail.record(
        "dataset-deleted",
        dataset.name,
        f"{counts.images} images, {counts.predictions} predictions and {counts.decisions} "
        f"decisions deleted; {counts.shared} images kept (also in other datasets)",
        user=user,
    )
    db.session.delete(dataset)
    db.session.commit()
    for paths in files:
        for path in paths:
            with suppress(OSError):
                path.unlink(missing_ok=True)
    image_leftovers.purge(doomed)
    return counts


def _rehome_shared_images(dataset_id: int) -> None:
    """Images that first arrived in this dataset but also belong to another: point them there."""
    shared = db.session.execute(
        select(Image.id, func.min(DatasetImage.dataset_id))
        .join(DatasetImage, DatasetImage.image_id == Image.id)
        .where(Image.dataset_id == dataset_id, DatasetImage.dataset_id != dataset_id)
        .group_by(Image.id)
    ).all()
    for image_id, other in shared:
        db.session.execute(update(Image).where(Image.id == image_id).values(dataset_id=other))


def _delete_image_rows(ids: list[int]) -> None:
    """Everything hanging off these images, then the images themselves."""
    # Undo rows point at the decisions they revert: drop those links before the rows.
    db.session.execute(
        update(ReviewDecision).where(ReviewDecision.image_id.in_(ids)).values(reverts_id=None)
    )
    hanging = (ReviewDecision, Prediction, Lease, QueueEntry, ReviewRequest, DatasetImage)
    for model in (*hanging, ImageEvidence, Check):
        db.session.execute(delete(model).where(model.image_id.in_(ids)))
    db.session.execute(delete(Image).where(Image.id.in_(ids)))


def set_archived(dataset: Dataset, archived: bool, user: User | None) -> None:
    """Archive (hide from reviewers' filters and new trainings) or restore ``dataset``."""
    dataset.archived_at = utcnow() if archived else None
    action = "dataset-archived" if archived else "dataset-restored"
    audit_trail.record(action, dataset.name, "", user=user)
    db.session.commit()
