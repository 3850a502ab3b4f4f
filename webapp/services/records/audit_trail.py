"""The audit trail: who did what, when, to what.

Review decisions and undos are read from their own append-only table; every other action that
changes the desk (activations, imports, dataset deletions and archives, token and account
changes) is written here as an :class:`AuditEvent` by the service that performs it, in the same
transaction. :func:`trail` merges both into one newest-first list that pages, filters and exports.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import case, literal, null, select, union_all

from ...extensions import db
from ...models import AuditEvent, Image, ReviewDecision, User

DECISION_ACTIONS = ("decision", "undo")
ACTIONS = (
    "decision",
    "undo",
    "activation",
    "import",
    "dataset-deleted",
    "dataset-archived",
    "dataset-restored",
    "dataset-created",
    "token-created",
    "token-revoked",
    "user-created",
    "user-disabled",
    "user-enabled",
    "password-reset",
    "role-changed",
    "sent-to-review",
)
CSV_FIELDS = ("time", "user", "action", "target", "image_sha256", "summary")
# The actor named on changes made from the command line, which no account logs in to make.
CLI_ACTOR = "cli"
# The actor named on activations the desk makes by itself (a first version, a better one).
AUTO_ACTOR = "auto-activation"


def record(
    action: str,
    target: str = "",
    summary: str = "",
    user: User | str | None = None,
    image_sha256: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one entry to the session (the caller's commit writes it with the change it records).

    ``user`` is the account that acted, or the name of an actor that is no account
    (:data:`CLI_ACTOR` for the command line), or None when nobody is known.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    account = user if isinstance(user, User) else None
    event = AuditEvent(
        action=action,
        target=target[:500],
        summary=summary,
        user_id=account.id if account is not None else None,
        username=account.username if account is not None else (user or ""),
        image_sha256=image_sha256,
        details=details,
    )
    db.session.add(event)
    return event


@dataclass(frozen=True)
class TrailFilter:
    """What the Audit page narrows the trail to; every field optional."""

    user: str = ""
    image: str = ""  # a SHA-256 or its prefix
    action: str = ""
    since: date | None = None
    until: date | None = None  # inclusive


def _decision_rows():
    """Review decisions shaped like audit entries."""
    is_undo = ReviewDecision.choice == "undo"
    return (
        select(
            ReviewDecision.created_at.label("created_at"),
            User.username.label("username"),
            _case_action(is_undo).label("action"),
            Image.file_name.label("target"),
            Image.sha256.label("image_sha256"),
            ReviewDecision.choice.label("choice"),
            ReviewDecision.label_before.label("label_before"),
            ReviewDecision.note.label("note"),
            literal("").label("summary"),
            literal("review_decisions").label("source"),
            ReviewDecision.id.label("row_id"),
        )
        .join(User, User.id == ReviewDecision.user_id)
        .join(Image, Image.id == ReviewDecision.image_id)
    )


def _case_action(is_undo):
    return case((is_undo, literal("undo")), else_=literal("decision"))


def _event_rows():
    """Audit events in the same shape."""
    return select(
        AuditEvent.created_at.label("created_at"),
        AuditEvent.username.label("username"),
        AuditEvent.action.label("action"),
        AuditEvent.target.label("target"),
        AuditEvent.image_sha256.label("image_sha256"),
        null().label("choice"),
        null().label("label_before"),
        null().label("note"),
        AuditEvent.summary.label("summary"),
        literal("audit_events").label("source"),
        AuditEvent.id.label("row_id"),
    )


def _narrow(statement, columns, chosen: TrailFilter):
    if chosen.user:
        statement = statement.where(columns["username"] == chosen.user)
    if chosen.image:
        statement = statement.where(columns["image_sha256"].startswith(chosen.image.lower()))
    if chosen.since:
        statement = statement.where(
            columns["created_at"] >= datetime.combine(chosen.since, datetime.min.time())
        )
    if chosen.until:
        end = datetime.combine(chosen.until + timedelta(days=1), datetime.min.time())
        statement = statement.where(columns["created_at"] < end)
    return statement


def trail(
    chosen: TrailFilter = TrailFilter(), limit: int | None = 200, offset: int = 0
) -> list[dict]:
    """The merged trail, newest first, narrowed by ``chosen``; each entry a plain dict."""
    parts = []
    if chosen.action in ("", *DECISION_ACTIONS):
        decisions = _decision_rows()
        columns = {
            "username": User.username,
            "image_sha256": Image.sha256,
            "created_at": ReviewDecision.created_at,
        }
        decisions = _narrow(decisions, columns, chosen)
        if chosen.action:
            is_undo = ReviewDecision.choice == "undo"
            decisions = decisions.where(is_undo if chosen.action == "undo" else ~is_undo)
        parts.append(decisions)
    events = _event_rows()
    columns = {
        "username": AuditEvent.username,
        "image_sha256": AuditEvent.image_sha256,
        "created_at": AuditEvent.created_at,
    }
    events = _narrow(events, columns, chosen)
    if chosen.action:
        events = events.where(AuditEvent.action == chosen.action)
    parts.append(events)
    merged = union_all(*parts).subquery()
    statement = select(merged).order_by(merged.c.created_at.desc(), merged.c.row_id.desc())
    if limit is not None:
        statement = statement.limit(limit).offset(offset)
    return [_entry(row) for row in db.session.execute(statement).mappings()]


def _entry(row) -> dict:
    summary = row["summary"]
    if row["source"] == "review_decisions":
        summary = _decision_summary(row["action"], row["choice"], row["label_before"], row["note"])
    return {
        "time": row["created_at"],
        "user": row["username"] or "",
        "action": row["action"],
        "target": row["target"] or "",
        "image_sha256": row["image_sha256"] or "",
        "summary": summary or "",
    }


def _decision_summary(action: str, choice: str, label_before: str, note: str) -> str:
    if action == "undo":
        return "undid their previous decision on this image"
    words = f"called it {choice} (label before: {label_before})"
    return f"{words}; note: {note}" if note else words


def trail_csv(chosen: TrailFilter = TrailFilter()) -> str:
    """The whole narrowed trail as CSV, one row per entry (the Audit page's export)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for entry in trail(chosen, limit=None):
        writer.writerow({**entry, "time": entry["time"].isoformat(sep=" ", timespec="seconds")})
    return buffer.getvalue()


def copy_decisions(image_ids: list[int], reason: str) -> int:
    """Write the decisions on ``image_ids`` into the trail as events (before their rows are
    deleted with a dataset), keeping who, when, what and the image's hash; returns how many."""
    copied = 0
    for start in range(0, len(image_ids), 2000):
        chunk = image_ids[start : start + 2000]
        rows = db.session.execute(
            select(ReviewDecision, User.username, Image.sha256, Image.file_name)
            .join(User, User.id == ReviewDecision.user_id)
            .join(Image, Image.id == ReviewDecision.image_id)
            .where(ReviewDecision.image_id.in_(chunk))
        ).all()
        for decision, username, sha256, file_name in rows:
            action = "undo" if decision.choice == "undo" else "decision"
            summary = _decision_summary(
                action, decision.choice, decision.label_before, decision.note
            )
            db.session.add(
                AuditEvent(
                    created_at=decision.created_at,
                    user_id=decision.user_id,
                    username=username,
                    action=action,
                    image_sha256=sha256,
                    target=file_name,
                    summary=f"{summary} [{reason}]",
                    details={"choice": decision.choice, "label_before": decision.label_before},
                )
            )
            copied += 1
    return copied


def usernames() -> list[str]:
    """Every account name and every other actor on record (``cli``), for the user filter."""
    accounts = set(db.session.scalars(select(User.username)))
    actors = db.session.scalars(
        select(AuditEvent.username).where(AuditEvent.username != "").distinct()
    )
    return sorted(accounts.union(actors))
