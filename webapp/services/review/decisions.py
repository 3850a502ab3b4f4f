"""Review decisions: record and undo, one lease at a time.

Decisions are append-only rows (who, when, which model version was shown, the label before, the
choice, a note). An undo is one more row, choice "undo", pointing at the decision it reverts. The
labels these rows imply are computed in :mod:`webapp.services.records.labels`; the queue is
told, in the same transaction, whether the image is still open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from ...extensions import db
from ...models import (
    Image,
    Lease,
    ModelVersion,
    ReviewDecision,
    User,
    utcnow,
)
from ..records import labels
from . import leases
from .buckets import ItemHeld
from .materialise import active_version_id
from .queue import set_open

CHOICES = ("real", "fake", "unsure", "skip")
UNDO = "undo"
MAX_NOTE = 2000
# Built once: an aliased entity is costly to construct, and a stable one keeps SQL compiled.
_REVERTING = aliased(ReviewDecision, name="reverting")

# Prepared once (see webapp.services.review.queue): the statements of every decision request.
DECISIONS = ReviewDecision.__table__
REVERTED = DECISIONS.alias("reverted")
REVERTING_ROW = DECISIONS.alias("reverting_row")
_INSERT_DECISION = insert(DECISIONS).returning(DECISIONS.c.id)
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
    :class:`.buckets.ItemHeld` while another reviewer holds the image, with :class:`Conflict` when
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
    holder = leases.lease_holder(image_id)
    if holder is not None and holder != user_id:
        return ItemHeld(image_id)
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
    return {key: values[key] for key in DECISION_FIELDS} | {"created_at": created}


DECISION_FIELDS = (
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
        set_open(decision["image_id"], not after.settled)
    db.session.commit()
    return Outcome(decision, after, after.label or import_label)


def _clean_note(note: str | None) -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise ReviewError(f"the note is {len(note)} characters; at most {MAX_NOTE}")
    return note


def _version_shown(model_version_id: int | None) -> int | None:
    if model_version_id is None:
        return active_version_id()
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
