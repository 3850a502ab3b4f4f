"""Everything the review screen shows about one image, and the escalations admins settle."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Select, and_, bindparam, distinct, func, select

from ...extensions import db
from ...models import (
    Dataset,
    Image,
    ModelVersion,
    Prediction,
    QueueEntry,
    ReviewDecision,
    User,
)
from ..records import labels
from .buckets import BUCKET_TITLES, QueueSettings, reason, settings
from .decisions import NotFound
from .history import history_entries, history_rows, state_from_history
from .materialise import active_version_id, ensure_current


def item_details(image_id: int, viewer: User, version_id: int | None = None) -> dict[str, Any]:
    """Everything the review screen shows about one image (URLs are added by the web layer).

    ``version_id`` is the active version when the caller knows it (a claim just checked it).
    Two queries: the image with its prediction and queue entry, and its decisions.
    """
    s = settings()
    version_id = version_id if version_id is not None else ensure_current()
    params = {"image_id": image_id, "version_id": version_id}
    image = db.session.execute(_details_statement(), params).mappings().first()
    if image is None:
        raise NotFound(f"no image {image_id}")
    rows = history_rows(image_id)
    state = state_from_history(image_id, rows)
    has_entry = image["entry_open"] is not None
    bucket = image["bucket"] if image["entry_open"] else None
    prediction = _prediction_dict(image, s)
    details = {
        "image_id": image_id,
        "file_name": image["file_name"],
        "dataset": image["dataset"],
        "split": image["split"],
        "label": state.label or image["label"],
        "import_label": image["label"],
        "label_source": image["label_source"],
        "label_conflict": image["label_conflict"],
        "review_status": state.status,
        "reviews_per_item": s.reviews_per_item,
        "bucket": bucket,
        "bucket_title": BUCKET_TITLES.get(bucket, "Not in the queue"),
        "prediction": prediction,
        "file": {key: image[key] for key in _FILE_FACTS} | {"exif": image["exif_summary"] or {}},
        "history": history_entries(rows, viewer, state),
    }
    details["reason"] = _why(prediction, has_entry, bucket, image["label"], s)
    if state.status == "escalated":
        choices = ", ".join(sorted({vote.choice.upper() for vote in state.votes}))
        details["reason"] = f"Reviewers disagree ({choices}): an admin's decision settles it."
    return details


_FILE_FACTS = ("format", "width", "height", "bytes", "mode", "jpeg_quality", "has_exif", "sha256")
_PREDICTION_FIELDS = (
    "model_version_id",
    "model_version",
    "verdict",
    "p_fake",
    "p_fake_raw",
    "oos_p_fake",
    "label_issue_score",
    "ood_score",
)


@functools.cache
def _details_statement() -> Select:
    """The image, its dataset's name, and (outer joins) its prediction and queue entry."""
    images, datasets = Image.__table__, Dataset.__table__
    predictions, versions = Prediction.__table__, ModelVersion.__table__
    entries = QueueEntry.__table__
    version = bindparam("version_id")
    return (
        select(
            images,
            datasets.c.name.label("dataset"),
            predictions.c.model_version_id,
            versions.c.name.label("model_version"),
            predictions.c.verdict,
            predictions.c.p_fake,
            predictions.c.p_fake_raw,
            predictions.c.oos_p_fake,
            predictions.c.label_issue_score,
            predictions.c.ood_score,
            entries.c.bucket,
            entries.c.is_open.label("entry_open"),
        )
        .join(datasets, datasets.c.id == images.c.dataset_id)
        .outerjoin(
            predictions,
            and_(predictions.c.image_id == images.c.id, predictions.c.model_version_id == version),
        )
        .outerjoin(versions, versions.c.id == predictions.c.model_version_id)
        .outerjoin(
            entries,
            and_(entries.c.image_id == images.c.id, entries.c.model_version_id == version),
        )
        .where(images.c.id == bindparam("image_id"))
    )


def _why(prediction, has_entry: bool, bucket, import_label: str, s: QueueSettings) -> str:
    """Why the item is on screen: its bucket's reason, or why it is not in the queue."""
    if prediction is None:
        return "No prediction from the active model version yet."
    if bucket is not None:
        return reason(prediction | {"bucket": bucket, "label": import_label}, s)
    if has_entry:
        return "Decided enough times: no longer in the queue."
    return "Opened directly: the active model does not flag this image."


def _prediction_dict(row, s: QueueSettings) -> dict | None:
    """The prediction columns of a details row as JSON (None without a prediction)."""
    if row["model_version_id"] is None:
        return None
    p_fake, ood = row["p_fake"], row["ood_score"]
    return {key: row[key] for key in _PREDICTION_FIELDS} | {
        "confidence": max(p_fake, 1 - p_fake),
        "ood_threshold": s.ood_threshold,
        "is_ood": ood is not None and ood >= s.ood_threshold,
    }


def _prediction(image_id: int, version_id: int | None, s: QueueSettings) -> dict | None:
    """The version's prediction for the image as JSON, with the version's name."""
    if version_id is None:
        return None
    params = {"image_id": image_id, "version_id": version_id}
    row = db.session.execute(_details_statement(), params).mappings().first()
    return _prediction_dict(row, s) if row is not None else None


def escalations(limit: int = 500) -> list[dict[str, Any]]:
    """Items whose reviewers disagree and that no admin has decided yet, oldest first."""
    votes = labels.active_votes_query().subquery()
    contested = list(
        db.session.scalars(
            select(votes.c.image_id)
            .group_by(votes.c.image_id)
            .having(func.count(distinct(votes.c.user_id)) >= 2)
            .order_by(func.max(votes.c.id))
        )
    )
    states = labels.review_states(contested)
    escalated = [image_id for image_id in contested if states[image_id].status == "escalated"]
    return [_escalation(image_id, states[image_id]) for image_id in escalated[:limit]]


def _escalation(image_id: int, state: labels.ReviewState) -> dict[str, Any]:
    image = db.session.get(Image, image_id)
    decision_ids = [vote.decision_id for vote in state.votes]
    rows = db.session.execute(
        select(ReviewDecision, User.username)
        .join(User, User.id == ReviewDecision.user_id)
        .where(ReviewDecision.id.in_(decision_ids))
        .order_by(ReviewDecision.id)
    )
    prediction = _prediction(image_id, active_version_id(), settings())
    return {
        "image_id": image_id,
        "file_name": image.file_name,
        "dataset": image.dataset.name,
        "import_label": image.label,
        "verdict": prediction["verdict"] if prediction else None,
        "p_fake": prediction["p_fake"] if prediction else None,
        "votes": [
            {
                "user": username,
                "choice": decision.choice,
                "note": decision.note,
                "created_at": decision.created_at.isoformat(timespec="seconds") + "Z",
            }
            for decision, username in rows
        ],
    }
