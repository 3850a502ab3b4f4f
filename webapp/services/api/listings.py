"""The API's lists and records, read in id order (keyset pages): images, one image with what was
said about it, predictions, decisions, jobs, versions. The views parse the request and serialise.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, select

from ...extensions import db
from ...models import (
    Dataset,
    DatasetImage,
    Image,
    Job,
    ModelVersion,
    Prediction,
    ReviewDecision,
    Split,
)
from ...models import User as UserRow
from ..records.lookup import UnknownName

SPLITS = [split.value for split in Split]


def version_names() -> dict[int, str]:
    """Every version's name by id."""
    return {
        row.id: row.name for row in db.session.execute(select(ModelVersion.id, ModelVersion.name))
    }


def images(
    after: int, limit: int, dataset: str | None = None, split: str | None = None
) -> Sequence[Image]:
    """Images with an id above ``after``, in id order, in ``dataset`` and ``split`` when named
    (:class:`UnknownName` for a dataset that does not exist, then ValueError for a split that
    is none of train, val and test)."""
    query = select(Image).where(Image.id > after).order_by(Image.id).limit(limit)
    if dataset:
        dataset_id = db.session.scalar(select(Dataset.id).where(Dataset.name == dataset))
        if dataset_id is None:
            raise UnknownName(f"no dataset {dataset!r}")
        members = select(DatasetImage.image_id).where(DatasetImage.dataset_id == dataset_id)
        query = query.where(Image.id.in_(members))
    if split:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}")
        query = query.where(Image.split == split)
    return db.session.scalars(query).all()


def image_record(image: Image) -> tuple[list[str], list[Prediction], list[ReviewDecision]]:
    """The datasets holding ``image`` (by name), every prediction and every decision on it."""
    datasets = db.session.scalars(
        select(Dataset.name)
        .join(DatasetImage, DatasetImage.dataset_id == Dataset.id)
        .where(DatasetImage.image_id == image.id)
        .order_by(Dataset.name)
    )
    predictions = db.session.scalars(
        select(Prediction).where(Prediction.image_id == image.id).order_by(Prediction.id)
    )
    decisions = db.session.scalars(
        select(ReviewDecision)
        .where(ReviewDecision.image_id == image.id)
        .order_by(ReviewDecision.id)
    )
    return list(datasets), list(predictions), list(decisions)


def predictions(version: ModelVersion, after: int, limit: int) -> Sequence[Prediction]:
    """``version``'s predictions for images with an id above ``after``, in image id order."""
    return db.session.scalars(
        select(Prediction)
        .where(Prediction.model_version_id == version.id, Prediction.image_id > after)
        .order_by(Prediction.image_id)
        .limit(limit)
    ).all()


def decisions(
    after: int, limit: int, image_id: int | None = None, reviewer: str | None = None
) -> Sequence[ReviewDecision]:
    """Decisions with an id above ``after`` in the order they were made, on ``image_id`` and by
    ``reviewer`` when given."""
    query = select(ReviewDecision).where(ReviewDecision.id > after)
    if image_id is not None:
        query = query.where(ReviewDecision.image_id == image_id)
    if reviewer:
        query = query.join(UserRow, UserRow.id == ReviewDecision.user_id).where(
            UserRow.username == reviewer
        )
    return db.session.scalars(query.order_by(ReviewDecision.id).limit(limit)).all()


def visible_jobs(viewer) -> Select:
    """The jobs ``viewer`` may see: every job for an admin, their own for a reviewer."""
    query = select(Job)
    if not viewer.is_admin:
        query = query.where(Job.user_id == viewer.id)
    return query


def jobs(
    viewer, after: int, limit: int, kind: str | None = None, state: str | None = None
) -> Sequence[Job]:
    """The jobs ``viewer`` may see with an id above ``after``, of ``kind`` and in ``state``."""
    query = visible_jobs(viewer).where(Job.id > after)
    if kind:
        query = query.where(Job.kind == kind)
    if state:
        query = query.where(Job.state == state)
    return db.session.scalars(query.order_by(Job.id).limit(limit)).all()


def visible_job(viewer, job_id: int) -> Job | None:
    """One job, if ``viewer`` may see it."""
    return db.session.scalar(visible_jobs(viewer).where(Job.id == job_id))


def all_versions() -> Sequence[ModelVersion]:
    """Every model version, newest first."""
    return db.session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())).all()
