"""Blind review: while an image still waits for independent reviews, a reviewer sees only their
own decisions on it; the other reviewers' choices and notes read "hidden" and "" (a vote seen
before one's own would anchor it). Admins see everything, and once an image is settled
(agreed or resolved) everyone does.

Every read that shows decisions to a reviewer goes through :func:`redact_decisions`: the review
screen's history, ``GET /api/v1/decisions``, ``GET /api/v1/images/<id>`` and the decisions
column of the misclassification report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from ..records import labels

HIDDEN = "hidden"


class Reader(Protocol):
    """Who reads: a User, a decisions.Viewer, anything with an id and an admin flag."""

    id: int
    is_admin: bool


def is_blind(reader: Reader | None) -> bool:
    """Whether ``reader`` may be kept from other reviewers' votes at all (None: no one, such
    as a command-line export run by the operator, sees everything)."""
    return reader is not None and not reader.is_admin and labels.reviews_per_item() > 1


def unsettled(image_ids: Iterable[int]) -> set[int]:
    """The images among ``image_ids`` still waiting for reviews."""
    ids = set(image_ids)
    if not ids:
        return set()
    states = labels.review_states(ids)
    return {image_id for image_id in ids if not states.get(image_id, labels.UNREVIEWED).settled}


def redact_decisions(
    reader: Reader | None,
    decisions: Sequence[dict[str, Any]],
    settled: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """``decisions`` (dicts with ``image_id``, ``user_id``, ``choice``, ``note``) as ``reader``
    may see them. ``settled``: image ids known to be settled (skips the state query)."""
    if not is_blind(reader):
        return list(decisions)
    image_ids = {decision["image_id"] for decision in decisions}
    blind = unsettled(image_ids) if settled is None else image_ids - set(settled)
    return [
        decision | {"choice": HIDDEN, "note": ""}
        if decision["image_id"] in blind and decision["user_id"] != reader.id
        else decision
        for decision in decisions
    ]
