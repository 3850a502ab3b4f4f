"""The decisions on one image, newest first, as the viewer may see them (blind review)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Select, bindparam, exists, select

from ...extensions import db
from ...models import (
    ModelVersion,
    Role,
    User,
)
from ..records import labels
from . import blind_review
from .decisions import DECISION_FIELDS, DECISIONS, REVERTING_ROW


def history(
    image_id: int, viewer: User, state: labels.ReviewState | None = None
) -> list[dict[str, Any]]:
    """Every decision on the image, newest first, with whether it was undone.

    While an item still waits for independent reviews, a reviewer does not see the other
    reviewers' choices and notes (they would anchor the next vote); admins see everything.
    """
    rows = history_rows(image_id)
    return history_entries(rows, viewer, state or state_from_history(image_id, rows))


def history_rows(image_id: int) -> list:
    return db.session.execute(_history_statement(), {"image_id": image_id}).mappings().all()


def state_from_history(image_id: int, rows) -> labels.ReviewState:
    """The review state, from the history rows already read (no second query)."""
    votes = [
        labels.Vote(row["id"], image_id, row["user_id"], row["choice"], row["role"] == Role.ADMIN)
        for row in rows
        if row["choice"] in labels.VOTE_CHOICES and not row["undone"]
    ]
    return labels.consensus(votes, labels.reviews_per_item()) if votes else labels.UNREVIEWED


def history_entries(rows, viewer: User, state: labels.ReviewState) -> list[dict[str, Any]]:
    viewer_id = viewer.id
    entries = [
        {key: row[key] for key in DECISION_FIELDS}
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
    undone = exists().where(REVERTING_ROW.c.reverts_id == DECISIONS.c.id)
    return (
        select(
            *(DECISIONS.c[key] for key in DECISION_FIELDS),
            DECISIONS.c.created_at,
            users.c.username,
            users.c.role,
            versions.c.name.label("version_name"),
            undone.label("undone"),
        )
        .join(users, users.c.id == DECISIONS.c.user_id)
        .outerjoin(versions, versions.c.id == DECISIONS.c.model_version_id)
        .where(DECISIONS.c.image_id == bindparam("image_id"))
        .order_by(DECISIONS.c.id.desc())
    )
