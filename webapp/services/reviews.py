"""Review decisions: record, undo, consensus and escalation, reviewer statistics, item details.

Decisions are append-only rows (who, when, which model version was shown, the label before, the
choice, a note). An undo is one more row, choice "undo", pointing at the decision it reverts. The
labels these rows imply are computed in :mod:`webapp.services.labels`; the queue is told, in the
same transaction, whether the image is still open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import delete, distinct, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import (
    Dataset,
    Image,
    Lease,
    ModelVersion,
    Prediction,
    ReviewDecision,
    User,
    utcnow,
)
from . import labels, queue

CHOICES = ("real", "fake", "unsure", "skip")
UNDO = "undo"
MAX_NOTE = 2000


class ReviewError(ValueError):
    """A decision that cannot be recorded; ``status`` is the HTTP status that fits."""

    status = 400


class NotFound(ReviewError):
    status = 404


class NothingToUndo(ReviewError):
    status = 404


@dataclass
class Outcome:
    """What a decision or an undo changed."""

    decision: ReviewDecision
    state: labels.ReviewState
    label: str  # the image's effective label afterwards
    reverted: ReviewDecision | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the API."""
        return {
            "decision": decision_dict(self.decision),
            "image_id": self.decision.image_id,
            "label": self.label,
            "review_status": self.state.status,
            "reverted": decision_dict(self.reverted) if self.reverted else None,
        }


def decision_dict(decision: ReviewDecision) -> dict[str, Any]:
    """One decision row as JSON."""
    return {
        "id": decision.id,
        "image_id": decision.image_id,
        "user_id": decision.user_id,
        "created_at": decision.created_at.isoformat(timespec="seconds") + "Z",
        "model_version_id": decision.model_version_id,
        "label_before": decision.label_before,
        "choice": decision.choice,
        "note": decision.note,
        "reverts_id": decision.reverts_id,
    }


# ----------------------------------------------------------------------------- decisions


def decide(
    user: User,
    image_id: int,
    choice: str,
    note: str = "",
    model_version_id: int | None = None,
) -> Outcome:
    """Record ``user``'s decision on an image and release their lease on it.

    ``model_version_id`` is the version whose verdict the reviewer was shown (default: the active
    one). Refused with :class:`queue.ItemHeld` while another reviewer holds the image.
    """
    choice = (choice or "").strip().lower()
    if choice not in CHOICES:
        raise ReviewError(f"choice must be one of {', '.join(CHOICES)}, not {choice!r}")
    note = _clean_note(note)
    image = db.session.get(Image, image_id)
    if image is None:
        raise NotFound(f"no image {image_id}")
    version_id = _version_shown(model_version_id)
    _lock_image(image_id)
    db.session.execute(delete(Lease).where(Lease.image_id == image_id, Lease.user_id == user.id))
    if queue.lease_holder(image_id) is not None:
        db.session.rollback()
        raise queue.ItemHeld(image_id)
    before = labels.review_state(image_id)
    decision = ReviewDecision(
        image_id=image_id,
        user_id=user.id,
        model_version_id=version_id,
        label_before=before.label or image.label,
        choice=choice,
        note=note,
    )
    db.session.add(decision)
    return _finish(decision, image)


def undo_last(user: User) -> Outcome:
    """Revert the user's latest decision that is not yet reverted (a new "undo" row)."""
    _take_write_lock()
    reverted_row = aliased(ReviewDecision)
    last = db.session.scalar(
        select(ReviewDecision)
        .where(ReviewDecision.user_id == user.id, ReviewDecision.choice != UNDO)
        .where(~exists().where(reverted_row.reverts_id == ReviewDecision.id))
        .order_by(ReviewDecision.id.desc())
        .limit(1)
    )
    if last is None:
        db.session.rollback()
        raise NothingToUndo("nothing to undo")
    image = db.session.get(Image, last.image_id)
    undo = ReviewDecision(
        image_id=last.image_id,
        user_id=user.id,
        model_version_id=last.model_version_id,
        label_before=labels.effective_label(image),
        choice=UNDO,
        reverts_id=last.id,
    )
    db.session.add(undo)
    try:
        outcome = _finish(undo, image)
    except IntegrityError as error:  # the same decision undone twice at once
        db.session.rollback()
        raise NothingToUndo("that decision was just undone") from error
    outcome.reverted = last
    return outcome


def _finish(decision: ReviewDecision, image: Image) -> Outcome:
    """Flush the row, update the queue from the new review state, commit."""
    db.session.flush()
    state = labels.review_state(image.id)
    queue.set_open(image.id, not state.settled)
    db.session.commit()
    return Outcome(decision, state, state.label or image.label)


def _clean_note(note: str | None) -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise ReviewError(f"the note is {len(note)} characters; at most {MAX_NOTE}")
    return note


def _version_shown(model_version_id: int | None) -> int | None:
    if model_version_id is None:
        return queue.active_version_id()
    if db.session.get(ModelVersion, int(model_version_id)) is None:
        raise ReviewError(f"no model version {model_version_id}")
    return int(model_version_id)


def _lock_image(image_id: int) -> None:
    """Serialise decisions on one image: a row lock where the database has them (PostgreSQL).

    SQLite needs none: its single writer is taken by the first write of the transaction.
    """
    db.session.execute(select(Image.id).where(Image.id == image_id).with_for_update())


def _take_write_lock() -> None:
    """Start the write transaction now, so what is read next cannot change before the commit."""
    db.session.execute(delete(Lease).where(Lease.expires_at <= utcnow()))


# ----------------------------------------------------------------------------- statistics


def reviewer_counts(user_id: int) -> dict[str, int]:
    """The reviewer's standing decisions: today (UTC) and all time, and skips."""
    midnight = datetime.combine(utcnow().date(), time())
    return {
        "today": _count(user_id, labels.VOTE_CHOICES, since=midnight),
        "all_time": _count(user_id, labels.VOTE_CHOICES),
        "skipped": _count(user_id, ("skip",)),
    }


def _count(user_id: int, choices: tuple[str, ...], since: datetime | None = None) -> int:
    """Decisions made minus decisions undone (only their author can undo them)."""
    made = select(func.count()).where(
        ReviewDecision.user_id == user_id, ReviewDecision.choice.in_(choices)
    )
    reverted = aliased(ReviewDecision)
    undone = (
        select(func.count())
        .select_from(ReviewDecision)
        .join(reverted, reverted.id == ReviewDecision.reverts_id)
        .where(ReviewDecision.user_id == user_id, ReviewDecision.choice == UNDO)
        .where(reverted.choice.in_(choices))
    )
    if since is not None:
        made = made.where(ReviewDecision.created_at >= since)
        undone = undone.where(reverted.created_at >= since)
    return db.session.scalar(made) - db.session.scalar(undone)


def reviewer_stats(user_id: int) -> dict[str, Any]:
    """Counts plus agreement: how often others' standing votes match the reviewer's."""
    mine = labels.active_votes_query().where(ReviewDecision.user_id == user_id).subquery()
    image_ids = list(db.session.scalars(select(mine.c.image_id).distinct()))
    compared = agreed = 0
    for votes in labels.votes_by_image(image_ids).values():
        standing = labels.consensus(votes, 1).votes
        my_vote = next((v for v in standing if v.user_id == user_id), None)
        if my_vote is None:
            continue
        others = [v for v in standing if v.user_id != user_id]
        compared += len(others)
        agreed += sum(v.choice == my_vote.choice for v in others)
    agreement = {
        "compared": compared,
        "agreed": agreed,
        "rate": agreed / compared if compared else None,
    }
    return {**reviewer_counts(user_id), "agreement": agreement}


# ----------------------------------------------------------------------------- escalations


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
    prediction = _prediction(image_id, queue.active_version_id())
    return {
        "image_id": image_id,
        "file_name": image.file_name,
        "dataset": image.dataset.name,
        "import_label": image.label,
        "verdict": prediction.verdict if prediction else None,
        "p_fake": prediction.p_fake if prediction else None,
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


# ----------------------------------------------------------------------------- item details


def history(image_id: int, viewer: User) -> list[dict[str, Any]]:
    """Every decision on the image, newest first, with whether it was undone.

    While an item still waits for independent reviews, a reviewer does not see the other
    reviewers' choices and notes (they would anchor the next vote); admins see everything.
    """
    reverted_row = aliased(ReviewDecision)
    rows = db.session.execute(
        select(
            ReviewDecision,
            User.username,
            ModelVersion.name,
            exists().where(reverted_row.reverts_id == ReviewDecision.id),
        )
        .join(User, User.id == ReviewDecision.user_id)
        .outerjoin(ModelVersion, ModelVersion.id == ReviewDecision.model_version_id)
        .where(ReviewDecision.image_id == image_id)
        .order_by(ReviewDecision.id.desc())
    ).all()
    blind = (
        not viewer.is_admin
        and labels.reviews_per_item() > 1
        and not labels.review_state(image_id).settled
    )
    entries = []
    for decision, username, version_name, undone in rows:
        hidden = blind and decision.user_id != viewer.id
        entries.append(
            {
                **decision_dict(decision),
                "user": username,
                "mine": decision.user_id == viewer.id,
                "model_version": version_name,
                "undone": bool(undone),
                "choice": "hidden" if hidden else decision.choice,
                "note": "" if hidden else decision.note,
            }
        )
    return entries


def item_details(image_id: int, viewer: User) -> dict[str, Any]:
    """Everything the review screen shows about one image (URLs are added by the web layer)."""
    image = db.session.get(Image, image_id)
    if image is None:
        raise NotFound(f"no image {image_id}")
    s = queue.settings()
    version_id = queue.active_version_id()
    prediction = _prediction(image_id, version_id)
    entry = queue.entry_for(image_id)
    state = labels.review_state(image_id)
    bucket = entry.bucket if entry is not None and entry.is_open else None
    details = {
        "image_id": image.id,
        "file_name": image.file_name,
        "dataset": db.session.scalar(select(Dataset.name).where(Dataset.id == image.dataset_id)),
        "split": image.split,
        "label": state.label or image.label,
        "import_label": image.label,
        "label_source": image.label_source,
        "label_conflict": image.label_conflict,
        "review_status": state.status,
        "reviews_per_item": s.reviews_per_item,
        "bucket": bucket,
        "bucket_title": queue.BUCKET_TITLES.get(bucket, "Not in the queue"),
        "prediction": _prediction_dict(prediction, s),
        "file": _file_facts(image),
        "history": history(image_id, viewer),
    }
    details["reason"] = _why(prediction, entry, bucket, image, s)
    return details


def _why(prediction, entry, bucket, image: Image, s: queue.QueueSettings) -> str:
    """Why the item is on screen: its bucket's reason, or why it is not in the queue."""
    if prediction is None:
        return "No prediction from the active model version yet."
    if bucket is not None:
        fields = _prediction_dict(prediction, s) | {"bucket": bucket, "label": image.label}
        return queue.reason(fields, s)
    if entry is not None:
        return "Decided enough times: no longer in the queue."
    return "Opened directly: the active model does not flag this image."


def _prediction(image_id: int, version_id: int | None) -> Prediction | None:
    if version_id is None:
        return None
    return db.session.scalar(
        select(Prediction).where(
            Prediction.image_id == image_id, Prediction.model_version_id == version_id
        )
    )


def _prediction_dict(prediction: Prediction | None, s: queue.QueueSettings) -> dict | None:
    if prediction is None:
        return None
    version = db.session.get(ModelVersion, prediction.model_version_id)
    ood = prediction.ood_score
    return {
        "model_version_id": prediction.model_version_id,
        "model_version": version.name,
        "verdict": prediction.verdict,
        "p_fake": prediction.p_fake,
        "p_fake_raw": prediction.p_fake_raw,
        "confidence": max(prediction.p_fake, 1 - prediction.p_fake),
        "oos_p_fake": prediction.oos_p_fake,
        "label_issue_score": prediction.label_issue_score,
        "ood_score": ood,
        "ood_threshold": s.ood_threshold,
        "is_ood": ood is not None and ood >= s.ood_threshold,
    }


def _file_facts(image: Image) -> dict[str, Any]:
    return {
        "format": image.format,
        "width": image.width,
        "height": image.height,
        "bytes": image.bytes,
        "mode": image.mode,
        "jpeg_quality": image.jpeg_quality,
        "has_exif": image.has_exif,
        "exif": image.exif_summary or {},
        "sha256": image.sha256,
    }


# ----------------------------------------------------------------------------- image files
# Stand-ins for webapp.services.storage (owned by the importer): where originals and thumbnails
# of an image live in the instance folder. The integrator points these two at storage.py.


def original_file(image: Image) -> Path:
    """The stored original of ``image``: ``images/<sha[:2]>/<sha[2:4]>/<sha>.<ext>``."""
    extension = (image.format or "bin").lower().replace("jpeg", "jpg")
    sha = image.sha256
    return Path(current_app.instance_path) / "images" / sha[:2] / sha[2:4] / f"{sha}.{extension}"


def thumbnail_file(image: Image) -> Path:
    """The stored JPEG thumbnail of ``image``: ``thumbs/<sha[:2]>/<sha>.jpg``."""
    sha = image.sha256
    return Path(current_app.instance_path) / "thumbs" / sha[:2] / f"{sha}.jpg"
