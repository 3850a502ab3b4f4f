"""What a reviewer's decisions add up to: counts (today, all time, skips) and agreement."""

from __future__ import annotations

import functools
from datetime import datetime, time
from typing import Any

from sqlalchemy import Select, bindparam, case, func, select

from ...extensions import db
from ...models import (
    ReviewDecision,
    utcnow,
)
from ..records import labels
from .decisions import DECISIONS, REVERTED, UNDO


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

    made = select(*tally(DECISIONS)).where(DECISIONS.c.user_id == bindparam("user_id"))
    undone = (
        select(*tally(REVERTED))
        .select_from(DECISIONS)
        .join(REVERTED, REVERTED.c.id == DECISIONS.c.reverts_id)
        .where(DECISIONS.c.user_id == bindparam("user_id"), DECISIONS.c.choice == UNDO)
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
