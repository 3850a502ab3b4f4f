"""Review decisions: record, undo, consensus and escalation, reviewer statistics, item details.

Decisions are append-only rows (who, when, which model version was shown, the label before, the
choice, a note). An undo is one more row, choice "undo", pointing at the decision it reverts. The
labels these rows imply are computed in :mod:`webapp.services.records.labels`; the queue is
told, in the same transaction, whether the image is still open.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, bindparam, case, delete, distinct, exists, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from ...extensions import db
from ...models import (
    Dataset,
    Image,
    Lease,
    ModelVersion,
    Prediction,
    QueueEntry,
    ReviewDecision,
    Role,
    User,
    utcnow,
)
from .. import storage
from ..records import labels
from . import blind_review, queue

CHOICES = ("real", "fake", "unsure", "skip")
UNDO = "undo"
MAX_NOTE = 2000
# Built once: an aliased entity is costly to construct, and a stable one keeps SQL compiled.
_REVERTING = aliased(ReviewDecision, name="reverting")

# Prepared once (see webapp.services.review.queue): the statements of every decision request.
_DECISIONS = ReviewDecision.__table__
_REVERTED = _DECISIONS.alias("reverted")
_REVERTING_ROW = _DECISIONS.alias("reverting_row")
_INSERT_DECISION = insert(_DECISIONS).returning(_DECISIONS.c.id)
_IMAGE_LABEL = select(Image.__table__.c.label).where(Image.__table__.c.id == bindparam("image_id"))
_VERSION_EXISTS = select(ModelVersion.__table__.c.id).where(
    ModelVersion.__table__.c.id == bindparam("version_id")
)
_DROP_MY_LEASE = delete(Lease.__table__).where(
    Lease.__table__.c.image_id == bindparam("image_id"),
    Lease.__table__.c.user_id == bindparam("user_id"),
)


class ReviewError(ValueError):
    """A decision that cannot be recorded; ``status`` is the HTTP status that fits."""

    status = 400


class NotFound(ReviewError):
    status = 404


class NothingToUndo(ReviewError):
    status = 404


class Conflict(ReviewError):
    """The decision clashes with the item's state: no lease on it, already decided, key reused."""

    status = 409


@dataclass(frozen=True)
class Viewer:
    """Who is asking, read once: a commit expires the User row, and reloading it costs a query."""

    id: int
    is_admin: bool

    @classmethod
    def of(cls, user: User) -> Viewer:
        """Snapshot of a user (or of Flask-Login's current_user)."""
        return cls(user.id, user.is_admin)


@dataclass
class Outcome:
    """What a decision or an undo changed (rows as JSON, taken before the commit expired them)."""

    decision: dict[str, Any]
    state: labels.ReviewState
    label: str  # the image's effective label afterwards
    reverted: dict[str, Any] | None = None
    replayed: bool = False  # the same request was recorded before; nothing new was stored

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the API."""
        return {
            "decision": self.decision,
            "image_id": self.decision["image_id"],
            "label": self.label,
            "review_status": self.state.status,
            "reverted": self.reverted,
            "replayed": self.replayed,
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
    idempotency_key: str | None = None,
) -> Outcome:
    """Record ``user``'s decision on an image they hold the lease on, and end that lease.

    ``user`` is a User or anything with ``id`` and ``is_admin``. ``model_version_id`` is the
    version whose verdict the reviewer was shown (default: the active one). A decision is taken
    once per claim: the lease is the claim, so the same request sent twice or concurrently finds
    no lease the second time. With ``idempotency_key`` (chosen by the client per decision) the
    repeat gets the first decision back (``Outcome.replayed``) instead of a refusal. Refused with
    :class:`queue.ItemHeld` while another reviewer holds the image, with :class:`Conflict` when
    the user holds no lease on it or already decided it.
    """
    user_id, is_admin = user.id, user.is_admin
    choice = (choice or "").strip().lower()
    if choice not in CHOICES:
        raise ReviewError(f"choice must be one of {', '.join(CHOICES)}, not {choice!r}")
    note = _clean_note(note)
    key = _clean_key(idempotency_key)
    if key is not None and (earlier := _decision_with_key(user_id, key)) is not None:
        return _replay(earlier, image_id, choice)
    import_label = db.session.scalar(_IMAGE_LABEL, {"image_id": image_id})
    if import_label is None:
        raise NotFound(f"no image {image_id}")
    version_id = _version_shown(model_version_id)
    _lock_image(image_id)
    # The first write takes SQLite's write lock, so the state read next stays true to the commit.
    dropped = db.session.execute(_DROP_MY_LEASE, {"image_id": image_id, "user_id": user_id})
    before = labels.review_state(image_id)
    if dropped.rowcount != 1 or any(vote.user_id == user_id for vote in before.votes):
        db.session.rollback()
        if key is not None and (earlier := _decision_with_key(user_id, key)) is not None:
            return _replay(earlier, image_id, choice)  # the same request, sent at once, won
        raise _refusal(user_id, image_id, before)
    try:
        decision = _insert_decision(
            image_id=image_id,
            user_id=user_id,
            model_version_id=version_id,
            label_before=before.label or import_label,
            choice=choice,
            note=note,
            idempotency_key=key,
        )
    except IntegrityError:
        db.session.rollback()
        if key is None or (earlier := _decision_with_key(user_id, key)) is None:
            raise
        return _replay(earlier, image_id, choice)
    after = before
    if choice in labels.VOTE_CHOICES:
        vote = labels.Vote(decision["id"], image_id, user_id, choice, is_admin)
        after = labels.consensus([*before.votes, vote], labels.reviews_per_item())
    return _finish(decision, before, after, import_label)


KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")


def _clean_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise ReviewError("idempotency_key must be 8 to 64 letters, digits, '-' or '_'")
    return key


def _decision_with_key(user_id: int, key: str) -> ReviewDecision | None:
    return db.session.scalar(
        select(ReviewDecision).where(
            ReviewDecision.user_id == user_id, ReviewDecision.idempotency_key == key
        )
    )


def _replay(earlier: ReviewDecision, image_id: int, choice: str) -> Outcome:
    """The outcome of a decision already recorded under the same key, as it stands now."""
    if earlier.image_id != image_id or earlier.choice != choice:
        raise Conflict(
            f"idempotency_key was already used for {earlier.choice} on image {earlier.image_id}"
        )
    decision = decision_dict(earlier)
    state = labels.review_state(image_id)
    import_label = db.session.scalar(_IMAGE_LABEL, {"image_id": image_id})
    db.session.commit()
    return Outcome(decision, state, state.label or import_label, replayed=True)


def _refusal(user_id: int, image_id: int, state: labels.ReviewState) -> ReviewError:
    """Why a decision without a lease, or on an item the user decided, is refused (409)."""
    mine = [vote for vote in state.votes if vote.user_id == user_id]
    if mine:
        return Conflict(
            f"you already decided image {image_id} ({mine[-1].choice.upper()}); "
            "undo that decision to change it"
        )
    holder = queue.lease_holder(image_id)
    if holder is not None and holder != user_id:
        return queue.ItemHeld(image_id)
    return Conflict(
        f"you hold no lease on image {image_id}: claim it first (POST /api/v1/review/claim); "
        "a lease ends with its decision or after its time"
    )


def _insert_decision(**values_given: Any) -> dict[str, Any]:
    """Append one decision row; returns it as JSON (see :func:`decision_dict`)."""
    values = {"created_at": utcnow(), "note": "", "reverts_id": None, "idempotency_key": None}
    values |= values_given
    values["id"] = db.session.execute(_INSERT_DECISION, values).scalar_one()
    created = values["created_at"].isoformat(timespec="seconds") + "Z"
    return {key: values[key] for key in _DECISION_FIELDS} | {"created_at": created}


_DECISION_FIELDS = (
    "id",
    "image_id",
    "user_id",
    "model_version_id",
    "label_before",
    "choice",
    "note",
    "reverts_id",
)


def undo_last(user: User) -> Outcome:
    """Revert the user's latest decision that is not yet reverted (a new "undo" row)."""
    user_id = user.id
    _take_write_lock()
    last = db.session.scalar(
        select(ReviewDecision)
        .where(ReviewDecision.user_id == user_id, ReviewDecision.choice != UNDO)
        .where(~exists().where(_REVERTING.reverts_id == ReviewDecision.id))
        .order_by(ReviewDecision.id.desc())
        .limit(1)
    )
    if last is None:
        db.session.rollback()
        raise NothingToUndo("nothing to undo")
    _lock_image(last.image_id)  # another reviewer's decision on it waits, and is seen after
    import_label = db.session.scalar(_IMAGE_LABEL, {"image_id": last.image_id})
    before = labels.review_state(last.image_id)
    reverted = decision_dict(last)
    try:
        undo = _insert_decision(
            image_id=last.image_id,
            user_id=user_id,
            model_version_id=last.model_version_id,
            label_before=before.label or import_label,
            choice=UNDO,
            reverts_id=last.id,
        )
    except IntegrityError as error:  # the same decision undone twice at once
        db.session.rollback()
        raise NothingToUndo("that decision was just undone") from error
    after = labels.review_state(last.image_id)
    outcome = _finish(undo, before, after, import_label)
    outcome.reverted = reverted
    return outcome


def _finish(
    decision: dict[str, Any],
    before: labels.ReviewState,
    after: labels.ReviewState,
    import_label: str,
) -> Outcome:
    """Open or close the image in the queue if its state changed; commit."""
    if after.settled != before.settled:
        queue.set_open(decision["image_id"], not after.settled)
    db.session.commit()
    return Outcome(decision, after, after.label or import_label)


def _clean_note(note: str | None) -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise ReviewError(f"the note is {len(note)} characters; at most {MAX_NOTE}")
    return note


def _version_shown(model_version_id: int | None) -> int | None:
    if model_version_id is None:
        return queue.active_version_id()
    if db.session.scalar(_VERSION_EXISTS, {"version_id": model_version_id}):
        return int(model_version_id)
    raise NotFound(f"no model version {model_version_id}")


def _lock_image(image_id: int) -> None:
    """Serialise decisions on one image: a row lock where the database has them (PostgreSQL).

    SQLite needs none: its single writer is taken by the first write of the transaction.
    """
    if db.session.get_bind().dialect.name != "sqlite":
        db.session.execute(select(Image.id).where(Image.id == image_id).with_for_update())


def _take_write_lock() -> None:
    """Start the write transaction now, so what is read next cannot change before the commit."""
    db.session.execute(delete(Lease).where(Lease.expires_at <= utcnow()))


# ----------------------------------------------------------------------------- statistics


def reviewer_counts(user_id: int) -> dict[str, int]:
    """The reviewer's standing decisions: today (UTC) and all time, and skips.

    Decisions made minus decisions undone (only their author can undo them): two index scans.
    """
    made_statement, undone_statement = _count_statements()
    params = {"user_id": user_id, "midnight": datetime.combine(utcnow().date(), time())}
    made = db.session.execute(made_statement, params).one()
    undone = db.session.execute(undone_statement, params).one()
    all_time, today, skipped = (int(a) - int(b) for a, b in zip(made, undone, strict=True))
    return {"today": today, "all_time": all_time, "skipped": skipped}


@functools.cache
def _count_statements() -> tuple[Select, Select]:
    def tally(table):
        is_vote = table.c.choice.in_(labels.VOTE_CHOICES)
        today = is_vote & (table.c.created_at >= bindparam("midnight"))
        return [
            func.coalesce(func.sum(case((condition, 1), else_=0)), 0)
            for condition in (is_vote, today, table.c.choice == "skip")
        ]

    made = select(*tally(_DECISIONS)).where(_DECISIONS.c.user_id == bindparam("user_id"))
    undone = (
        select(*tally(_REVERTED))
        .select_from(_DECISIONS)
        .join(_REVERTED, _REVERTED.c.id == _DECISIONS.c.reverts_id)
        .where(_DECISIONS.c.user_id == bindparam("user_id"), _DECISIONS.c.choice == UNDO)
    )
    return made, undone


def reviewer_stats(user_id: int) -> dict[str, Any]:
    """Counts plus agreement: how often others' standing votes match the reviewer's.

    Under blind review only settled images count: agreement on an image still waiting for
    reviews (or for an admin) would tell the reviewer how the others voted on it.
    """
    mine = labels.active_votes_query().where(ReviewDecision.user_id == user_id).subquery()
    image_ids = list(db.session.scalars(select(mine.c.image_id).distinct()))
    required = labels.reviews_per_item()
    compared = agreed = 0
    for votes in labels.votes_by_image(image_ids).values():
        if required > 1 and not labels.consensus(votes, required).settled:
            continue
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
    prediction = _prediction(image_id, queue.active_version_id(), queue.settings())
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


# ----------------------------------------------------------------------------- item details


def history(
    image_id: int, viewer: User, state: labels.ReviewState | None = None
) -> list[dict[str, Any]]:
    """Every decision on the image, newest first, with whether it was undone.

    While an item still waits for independent reviews, a reviewer does not see the other
    reviewers' choices and notes (they would anchor the next vote); admins see everything.
    """
    rows = _history_rows(image_id)
    return _history_entries(rows, viewer, state or _state_from_history(image_id, rows))


def _history_rows(image_id: int) -> list:
    return db.session.execute(_history_statement(), {"image_id": image_id}).mappings().all()


def _state_from_history(image_id: int, rows) -> labels.ReviewState:
    """The review state, from the history rows already read (no second query)."""
    votes = [
        labels.Vote(row["id"], image_id, row["user_id"], row["choice"], row["role"] == Role.ADMIN)
        for row in rows
        if row["choice"] in labels.VOTE_CHOICES and not row["undone"]
    ]
    return labels.consensus(votes, labels.reviews_per_item()) if votes else labels.UNREVIEWED


def _history_entries(rows, viewer: User, state: labels.ReviewState) -> list[dict[str, Any]]:
    viewer_id = viewer.id
    entries = [
        {key: row[key] for key in _DECISION_FIELDS}
        | {
            "created_at": row["created_at"].isoformat(timespec="seconds") + "Z",
            "user": row["username"],
            "mine": row["user_id"] == viewer_id,
            "model_version": row["version_name"],
            "undone": bool(row["undone"]),
        }
        for row in rows
    ]
    settled = {row["image_id"] for row in rows} if state.settled else set()
    return blind_review.redact_decisions(viewer, entries, settled=settled)


@functools.cache
def _history_statement() -> Select:
    users, versions = User.__table__, ModelVersion.__table__
    undone = exists().where(_REVERTING_ROW.c.reverts_id == _DECISIONS.c.id)
    return (
        select(
            *(_DECISIONS.c[key] for key in _DECISION_FIELDS),
            _DECISIONS.c.created_at,
            users.c.username,
            users.c.role,
            versions.c.name.label("version_name"),
            undone.label("undone"),
        )
        .join(users, users.c.id == _DECISIONS.c.user_id)
        .outerjoin(versions, versions.c.id == _DECISIONS.c.model_version_id)
        .where(_DECISIONS.c.image_id == bindparam("image_id"))
        .order_by(_DECISIONS.c.id.desc())
    )


def item_details(image_id: int, viewer: User, version_id: int | None = None) -> dict[str, Any]:
    """Everything the review screen shows about one image (URLs are added by the web layer).

    ``version_id`` is the active version when the caller knows it (a claim just checked it).
    Two queries: the image with its prediction and queue entry, and its decisions.
    """
    s = queue.settings()
    version_id = version_id if version_id is not None else queue.ensure_current()
    params = {"image_id": image_id, "version_id": version_id}
    image = db.session.execute(_details_statement(), params).mappings().first()
    if image is None:
        raise NotFound(f"no image {image_id}")
    rows = _history_rows(image_id)
    state = _state_from_history(image_id, rows)
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
        "bucket_title": queue.BUCKET_TITLES.get(bucket, "Not in the queue"),
        "prediction": prediction,
        "file": {key: image[key] for key in _FILE_FACTS} | {"exif": image["exif_summary"] or {}},
        "history": _history_entries(rows, viewer, state),
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


def _why(prediction, has_entry: bool, bucket, import_label: str, s: queue.QueueSettings) -> str:
    """Why the item is on screen: its bucket's reason, or why it is not in the queue."""
    if prediction is None:
        return "No prediction from the active model version yet."
    if bucket is not None:
        return queue.reason(prediction | {"bucket": bucket, "label": import_label}, s)
    if has_entry:
        return "Decided enough times: no longer in the queue."
    return "Opened directly: the active model does not flag this image."


def _prediction_dict(row, s: queue.QueueSettings) -> dict | None:
    """The prediction columns of a details row as JSON (None without a prediction)."""
    if row["model_version_id"] is None:
        return None
    p_fake, ood = row["p_fake"], row["ood_score"]
    return {key: row[key] for key in _PREDICTION_FIELDS} | {
        "confidence": max(p_fake, 1 - p_fake),
        "ood_threshold": s.ood_threshold,
        "is_ood": ood is not None and ood >= s.ood_threshold,
    }


def _prediction(image_id: int, version_id: int | None, s: queue.QueueSettings) -> dict | None:
    """The version's prediction for the image as JSON, with the version's name."""
    if version_id is None:
        return None
    params = {"image_id": image_id, "version_id": version_id}
    row = db.session.execute(_details_statement(), params).mappings().first()
    return _prediction_dict(row, s) if row is not None else None


# ----------------------------------------------------------------------------- image files
# Stand-ins for webapp.services.storage (owned by the importer): where originals and thumbnails
# of an image live in the instance folder. The integrator points these two at storage.py.


def original_file(image: Image) -> Path:
    """The stored original of ``image`` in the content-addressed image store."""
    return storage.original_path(image)


def thumbnail_file(image: Image) -> Path:
    """The stored JPEG thumbnail of ``image``."""
    return storage.thumbnail_path(image.sha256)
