"""The image browser: any dataset's images filtered, sorted and paged, and one image's record.

Paging is keyset: a page ends with a cursor (the sort value and the image id of its last row)
and the next page starts strictly after it, so page 500 costs what page 1 costs. Scores come
from the active version's predictions (``ix_predictions_version_pfake`` serves the p_fake sort).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import and_, exists, or_, select, tuple_
from sqlalchemy.orm import aliased

from ...extensions import db
from ...models import (
    Dataset,
    DatasetImage,
    Image,
    ModelVersion,
    Prediction,
    QueueEntry,
    ReviewDecision,
    ReviewRequest,
    User,
)

PAGE_SIZE = 60
SORTS = {
    "id": "oldest first",
    "-id": "newest first",
    "p_fake": "p(fake) low to high",
    "-p_fake": "p(fake) high to low",
    "-ood": "most out of distribution first",
    "-bytes": "largest files first",
    "bytes": "smallest files first",
}


@dataclass(frozen=True)
class BrowseFilter:
    """The browser's filters, as the query string gives them (empty: no filter)."""

    dataset: str = ""
    label: str = ""
    verdict: str = ""
    bucket: str = ""
    split: str = ""
    reviewed: str = ""  # "yes" | "no"
    format: str = ""
    p_min: float | None = None
    p_max: float | None = None
    ood_min: float | None = None
    kb_min: float | None = None
    kb_max: float | None = None
    px_min: float | None = None  # the long side (the longer of width and height), in pixels
    px_max: float | None = None
    sort: str = "id"

    @classmethod
    def from_args(cls, args) -> BrowseFilter:
        """Build from request arguments, ignoring values that do not parse."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = (args.get(field.name) or "").strip()
            if not raw:
                continue
            if field.type in ("float | None",):
                try:
                    values[field.name] = float(raw)
                except ValueError:
                    continue
            else:
                values[field.name] = raw
        if values.get("sort") not in SORTS:
            values["sort"] = "id"
        return cls(**values)


def _active_version_id() -> int | None:
    return db.session.scalar(select(ModelVersion.id).where(ModelVersion.is_active.is_(True)))


def _reviewed():
    """An image with a real/fake/unsure decision that was not undone."""
    undo = aliased(ReviewDecision)
    return exists().where(
        ReviewDecision.image_id == Image.id,
        ReviewDecision.choice.in_(("real", "fake", "unsure")),
        ~exists().where(undo.reverts_id == ReviewDecision.id),
    )


def _sort_column(sort: str):
    name = sort.lstrip("-")
    return {
        "id": Image.id,
        "p_fake": Prediction.p_fake,
        "ood": Prediction.ood_score,
        "bytes": Image.bytes,
    }[name]


def _statement(chosen: BrowseFilter, version_id: int | None):
    prediction_join = and_(
        Prediction.image_id == Image.id, Prediction.model_version_id == version_id
    )
    statement = select(Image, Prediction).outerjoin(Prediction, prediction_join)
    conditions = []
    if chosen.dataset:
        members = (
            select(DatasetImage.image_id)
            .join(Dataset, Dataset.id == DatasetImage.dataset_id)
            .where(Dataset.name == chosen.dataset)
        )
        conditions.append(Image.id.in_(members))
    for value, column in (
        (chosen.label, Image.label),
        (chosen.split, Image.split),
        (chosen.verdict, Prediction.verdict),
    ):
        if value:
            conditions.append(column == value)
    if chosen.format:
        conditions.append(Image.format == chosen.format.upper())
    if chosen.bucket:
        in_bucket = select(QueueEntry.image_id).where(
            QueueEntry.model_version_id == version_id, QueueEntry.bucket == chosen.bucket
        )
        conditions.append(Image.id.in_(in_bucket))
    if chosen.reviewed in ("yes", "no"):
        conditions.append(_reviewed() if chosen.reviewed == "yes" else ~_reviewed())
    for bound, column, scale, above in (
        (chosen.p_min, Prediction.p_fake, 1, True),
        (chosen.p_max, Prediction.p_fake, 1, False),
        (chosen.ood_min, Prediction.ood_score, 1, True),
        (chosen.kb_min, Image.bytes, 1024, True),
        (chosen.kb_max, Image.bytes, 1024, False),
    ):
        if bound is not None:
            conditions.append(column >= bound * scale if above else column <= bound * scale)
    return statement.where(*conditions, *_long_side_conditions(chosen))


def _long_side_conditions(chosen: BrowseFilter) -> list:
    """The long-side bounds: the long side reaches n when either side does, and stays within n
    when both do.

    No index on width or height: measured at 100,000 images (``bench/browser_bench.py``),
    SQLite never used one for a keyset page except to OR two of them and sort a quarter of the
    table (230 ms a page against 6-10 ms scanning in page order until the page is full)."""
    conditions = []
    if chosen.px_min is not None:
        conditions.append(or_(Image.width >= chosen.px_min, Image.height >= chosen.px_min))
    if chosen.px_max is not None:
        conditions.append(and_(Image.width <= chosen.px_max, Image.height <= chosen.px_max))
    return conditions


def page(
    chosen: BrowseFilter, after: str = "", size: int | None = None
) -> tuple[list[tuple[Image, Prediction | None]], str]:
    """One page of images and their active-version predictions, and the cursor of the next
    page ("" at the end). ``after`` is the cursor a previous page returned; ``size`` defaults
    to :data:`PAGE_SIZE`, read at each call."""
    size = size or PAGE_SIZE
    version_id = _active_version_id()
    statement = _statement(chosen, version_id)
    column = _sort_column(chosen.sort)
    descending = chosen.sort.startswith("-")
    if column is not Image.id:
        statement = statement.where(column.is_not(None))
    cursor = _parse_cursor(after)
    if cursor is not None:
        value, last_id = cursor
        if column is Image.id:
            statement = statement.where(Image.id < last_id if descending else Image.id > last_id)
        else:
            key = tuple_(column, Image.id)
            statement = statement.where(
                key < tuple_(value, last_id) if descending else key > tuple_(value, last_id)
            )
    if column is Image.id:
        order = [Image.id.desc() if descending else Image.id]
    else:
        order = [column.desc(), Image.id.desc()] if descending else [column, Image.id]
    rows = db.session.execute(statement.order_by(*order).limit(size + 1)).all()
    more = len(rows) > size
    rows = [(row[0], row[1]) for row in rows[:size]]
    next_cursor = _cursor_of(rows[-1], column) if more and rows else ""
    return rows, next_cursor


def _cursor_of(row: tuple[Image, Prediction | None], column) -> str:
    image, prediction = row
    if column is Image.id:
        return f"{image.id}"
    value = {"p_fake": "p_fake", "ood_score": "ood_score"}.get(column.key)
    number = getattr(prediction, value) if value else getattr(image, column.key)
    return f"{number!r}:{image.id}"


def _parse_cursor(after: str) -> tuple[float | None, int] | None:
    if not after:
        return None
    try:
        if ":" in after:
            value, last_id = after.rsplit(":", 1)
            return float(value), int(last_id)
        return None, int(after)
    except ValueError:
        return None


def choices() -> dict[str, list[str]]:
    """The values the filter menus offer: datasets, formats, buckets."""
    return {
        "datasets": list(db.session.scalars(select(Dataset.name).order_by(Dataset.name))),
        "formats": list(db.session.scalars(select(Image.format).distinct().order_by(Image.format))),
        "buckets": ["label_issue", "misclassified", "uncertain", "ood", "audit"],
    }


def image_record(image: Image) -> dict[str, Any]:
    """Everything known about one image: datasets, predictions of every version, decisions."""
    memberships = db.session.execute(
        select(Dataset.id, Dataset.name, DatasetImage.original_path, DatasetImage.label)
        .join(DatasetImage, DatasetImage.dataset_id == Dataset.id)
        .where(DatasetImage.image_id == image.id)
        .order_by(Dataset.name)
    ).all()
    predictions = db.session.execute(
        select(ModelVersion.name, ModelVersion.is_active, Prediction)
        .join(Prediction, Prediction.model_version_id == ModelVersion.id)
        .where(Prediction.image_id == image.id)
        .order_by(ModelVersion.id)
    ).all()
    decisions = db.session.execute(
        select(ReviewDecision, User.username)
        .join(User, User.id == ReviewDecision.user_id)
        .where(ReviewDecision.image_id == image.id)
        .order_by(ReviewDecision.id)
    ).all()
    undone = {decision.reverts_id for decision, _ in decisions if decision.reverts_id}
    bucket = db.session.scalar(
        select(QueueEntry.bucket).where(
            QueueEntry.image_id == image.id, QueueEntry.model_version_id == _active_version_id()
        )
    )
    return {
        "memberships": memberships,
        "predictions": predictions,
        "decisions": [(d, name, d.id in undone) for d, name in decisions],
        "bucket": bucket,
    }


def new_evaluation_dataset(name: str, image_ids: list[int], user) -> Dataset:
    """Put the chosen images into a new evaluation-only dataset (they are never trained on
    from then on); refuses a name already taken."""
    from ..records import audit_trail

    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("give the new dataset a name of 1 to 200 characters")
    if db.session.scalar(select(Dataset.id).where(Dataset.name == name)):
        raise ValueError(f"a dataset named {name!r} exists already; choose another name")
    found = list(db.session.scalars(select(Image).where(Image.id.in_(image_ids))))
    if not found:
        raise ValueError("select at least one image")
    dataset = Dataset(name=name, evaluation_only=True, description="chosen in the image browser")
    db.session.add(dataset)
    db.session.flush()
    for image in found:
        db.session.add(
            DatasetImage(
                dataset_id=dataset.id,
                image_id=image.id,
                original_path=image.file_name,
                label=image.label,
            )
        )
    audit_trail.record(
        "dataset-created", name, f"{len(found)} images chosen in the image browser", user=user
    )
    db.session.commit()
    return dataset


def send_to_review(image_ids: list[int], user) -> tuple[int, int]:
    """Put the chosen images in the review queue's ``requested`` bucket; returns (newly sent,
    already sent before). Images the active version has not scored wait until it has."""
    from ..records import audit_trail

    found = list(db.session.scalars(select(Image.id).where(Image.id.in_(image_ids))))
    if not found:
        raise ValueError("select at least one image")
    already = set(
        db.session.scalars(select(ReviewRequest.image_id).where(ReviewRequest.image_id.in_(found)))
    )
    new = [image_id for image_id in found if image_id not in already]
    for image_id in new:
        db.session.add(ReviewRequest(image_id=image_id, user_id=user.id if user else None))
    audit_trail.record(
        "sent-to-review",
        f"{len(new)} images",
        f"{len(new)} images sent to the review queue from the image browser",
        user=user,
        details={"image_ids": new},
    )
    db.session.commit()
    return len(new), len(already)
