"""Effective labels: what an image is once reviewers have spoken.

An image's effective label is the consensus of its review decisions, else the label its import gave
it. Decisions are append-only, so the label is always derived, never stored:

- a *vote* is a decision REAL, FAKE or unsure that no later "undo" row reverts; a reviewer who voted
  twice on one image counts once, with their latest vote;
- an admin's vote is final: the latest admin vote is the label (admins resolve escalations);
- otherwise, once ``REVIEWS_PER_ITEM`` reviewers have voted, a unanimous vote is the label and a
  split vote is *escalated* (no consensus: the import label stays until an admin decides);
- fewer votes than that leave the item *pending* and the import label in force.

A consensus of "unsure" gives the label "unsure": retraining leaves those images out.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Select, bindparam, case, distinct, exists, func, select

from ...extensions import db
from ...models import Image, ReviewDecision, Role, User

VOTE_CHOICES = ("real", "fake", "unsure")
UNSURE = "unsure"
# Settled items have been decided enough: they leave the queue (escalated ones go to the admins).
SETTLED_STATUSES = frozenset({"agreed", "escalated", "resolved"})
_CHUNK = 900  # bound on the ids in one IN (...) list, well under every database's limit
_UNDO = ReviewDecision.__table__.alias("undo_row")


@dataclass(frozen=True)
class Vote:
    """One reviewer's standing vote on one image."""

    decision_id: int
    image_id: int
    user_id: int
    choice: str
    is_admin: bool


@dataclass(frozen=True)
class ReviewState:
    """Where an image stands with its reviewers.

    ``status`` is one of "unreviewed", "pending", "agreed", "escalated" (split vote, waiting for
    an admin) and "resolved" (an admin overruled another vote). ``label`` is the consensus, if any.
    """

    status: str
    label: str | None
    votes: tuple[Vote, ...] = ()

    @property
    def settled(self) -> bool:
        """Decided enough times to leave the queue."""
        return self.status in SETTLED_STATUSES


UNREVIEWED = ReviewState("unreviewed", None)


def reviews_per_item() -> int:
    """How many reviewers must vote before their agreement sets the label (at least 1)."""
    return max(1, int(current_app.config.get("REVIEWS_PER_ITEM", 1)))


def consensus(votes: Iterable[Vote], required: int) -> ReviewState:
    """Apply the consensus rule (see the module docstring) to an image's votes."""
    latest: dict[int, Vote] = {}
    for vote in sorted(votes, key=lambda v: v.decision_id):
        latest[vote.user_id] = vote
    standing = tuple(sorted(latest.values(), key=lambda v: v.decision_id))
    if not standing:
        return UNREVIEWED
    admin_votes = [vote for vote in standing if vote.is_admin]
    if admin_votes:
        final = admin_votes[-1].choice
        agreed = all(vote.choice == final for vote in standing)
        return ReviewState("agreed" if agreed else "resolved", final, standing)
    if len(standing) < required:
        return ReviewState("pending", None, standing)
    choices = {vote.choice for vote in standing}
    if len(choices) == 1:
        return ReviewState("agreed", choices.pop(), standing)
    return ReviewState("escalated", None, standing)


def active_votes_query() -> Select:
    """Rows (decision id, image id, user id, choice, role) of every vote not undone."""
    decisions, users = ReviewDecision.__table__, User.__table__
    return (
        select(
            decisions.c.id,
            decisions.c.image_id,
            decisions.c.user_id,
            decisions.c.choice,
            users.c.role,
        )
        .join(users, users.c.id == decisions.c.user_id)
        .where(decisions.c.choice.in_(VOTE_CHOICES))
        .where(~exists().where(_UNDO.c.reverts_id == decisions.c.id))
    )


@functools.cache
def _votes_of_image() -> Select:
    """Prepared once: the votes on image ``:image_id`` (asked on every decision)."""
    return active_votes_query().where(ReviewDecision.__table__.c.image_id == bindparam("image_id"))


def votes_by_image(image_ids: Iterable[int] | None = None) -> dict[int, list[Vote]]:
    """Standing votes grouped by image, for ``image_ids`` or for every image."""
    grouped: dict[int, list[Vote]] = defaultdict(list)
    column = ReviewDecision.__table__.c.image_id
    for query in _chunked(active_votes_query(), column, image_ids):
        for decision_id, image_id, user_id, choice, role in db.session.execute(query):
            vote = Vote(decision_id, image_id, user_id, choice, role == Role.ADMIN)
            grouped[image_id].append(vote)
    return dict(grouped)


def review_states(image_ids: Iterable[int] | None = None) -> dict[int, ReviewState]:
    """The review state of every image that has votes (others are unreviewed)."""
    required = reviews_per_item()
    return {
        image_id: consensus(votes, required)
        for image_id, votes in votes_by_image(image_ids).items()
    }


def review_state(image_id: int) -> ReviewState:
    """The review state of one image."""
    votes = [
        Vote(decision_id, image_id, user_id, choice, role == Role.ADMIN)
        for decision_id, _image, user_id, choice, role in db.session.execute(
            _votes_of_image(), {"image_id": image_id}
        )
    ]
    return consensus(votes, reviews_per_item()) if votes else UNREVIEWED


def effective_labels(image_ids: Iterable[int] | None = None) -> dict[int, str]:
    """Effective label of each image: "real", "fake", "unknown" or "unsure" (leave out of training).

    With ``image_ids`` None, every image; unknown ids are left out of the result.
    """
    ids = None if image_ids is None else list(dict.fromkeys(image_ids))
    labels: dict[int, str] = {}
    for query in _chunked(select(Image.id, Image.label), Image.id, ids):
        labels.update((image_id, label) for image_id, label in db.session.execute(query))
    for image_id, state in review_states(ids).items():
        if state.label is not None and image_id in labels:
            labels[image_id] = state.label
    return labels


def _chunked(query: Select, column, ids: Iterable[int] | None) -> Iterator[Select]:
    """``query`` once, or once per chunk of ``ids`` restricted on ``column``."""
    if ids is None:
        yield query
        return
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        yield query.where(column.in_(ids[start : start + _CHUNK]))


def settled_image_ids_query(required: int) -> Select:
    """SQL for the ids of settled images: the same rule as :func:`consensus`, for bulk use.

    Settled = an admin has voted, or at least ``required`` distinct reviewers have voted.
    """
    votes = active_votes_query().subquery()
    return (
        select(votes.c.image_id)
        .group_by(votes.c.image_id)
        .having(
            (func.count(distinct(votes.c.user_id)) >= required)
            | (func.max(case((votes.c.role == Role.ADMIN, 1), else_=0)) == 1)
        )
    )


def reviewed_image_ids() -> list[int]:
    """Images with at least one standing label decision (undone ones do not count)."""
    undone = select(ReviewDecision.reverts_id).where(ReviewDecision.reverts_id.is_not(None))
    query = (
        select(ReviewDecision.image_id)
        .where(ReviewDecision.choice.in_(VOTE_CHOICES), ReviewDecision.id.not_in(undone))
        .distinct()
        .order_by(ReviewDecision.image_id)
    )
    return list(db.session.scalars(query))
