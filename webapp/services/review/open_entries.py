"""The SQL that picks open queue entries, shared by reading the queue and by claims.

The statements served per request are built once per filter shape, with bind parameters, on the
tables (Core): building a SQLAlchemy statement costs more than SQLite takes to run it, and a
statement object keeps its compiled SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    bindparam,
    exists,
    false,
    func,
    or_,
    true,
)

from ...models import (
    DatasetImage,
    Image,
    Lease,
    QueueEntry,
    ReviewDecision,
)
from ..records import labels
from .buckets import QueueFilter, QueueSettings

ENTRIES = QueueEntry.__table__
LEASES = Lease.__table__
DECISIONS = ReviewDecision.__table__
_UNDOS = ReviewDecision.__table__.alias("undo_row")
_FIRST_SEEN = Image.__table__.alias("first_seen")  # the outer query may join images already
QUEUE_ORDER = (ENTRIES.c.bucket_rank, ENTRIES.c.sort_key, ENTRIES.c.image_id)
_FILTER_PARAMS = ("bucket_rank", "split", "verdict", "dataset_id")


def shape_and_params(
    s: QueueSettings, filters: QueueFilter, dataset_id: int | None
) -> tuple[tuple[bool, ...], dict[str, Any]]:
    """Which filters are set (the statement's shape) and their values (its parameters)."""
    params: dict[str, Any] = {}
    if filters.bucket is not None:
        params["bucket_rank"] = s.buckets.index(filters.bucket)
    if filters.split is not None:
        params["split"] = filters.split
    if filters.verdict is not None:
        params["verdict"] = filters.verdict
    if dataset_id is not None:
        params["dataset_id"] = dataset_id
    return tuple(name in params for name in _FILTER_PARAMS), params


def open_entry_clauses(shape: tuple[bool, ...], walk: bool = True) -> list[ColumnElement[bool]]:
    """WHERE clauses of the open entries of version ``:version_id`` that pass the filters.

    ``walk=False`` hides ``is_open`` from the planner, for queries driven by a few known image
    ids: it then looks them up by primary key instead of walking the queue-order index.
    """
    bucket, split, verdict, dataset = shape
    is_open = ENTRIES.c.is_open if walk else func.coalesce(ENTRIES.c.is_open, false())
    clauses = [ENTRIES.c.model_version_id == bindparam("version_id"), is_open == true()]
    if bucket:
        clauses.append(ENTRIES.c.bucket_rank == bindparam("bucket_rank"))
    if split:
        clauses.append(ENTRIES.c.split == bindparam("split"))
    if verdict:
        clauses.append(ENTRIES.c.verdict == bindparam("verdict"))
    if dataset:
        members = DatasetImage.__table__
        member = exists().where(
            members.c.image_id == ENTRIES.c.image_id,
            members.c.dataset_id == bindparam("dataset_id"),
        )
        first_seen = exists().where(
            _FIRST_SEEN.c.id == ENTRIES.c.image_id,
            _FIRST_SEEN.c.dataset_id == bindparam("dataset_id"),
        )
        clauses.append(or_(member, first_seen))
    return clauses


def standing_decisions_of_me(choices: Iterable[str]) -> list[ColumnElement[bool]]:
    """WHERE clauses: my decisions with one of ``choices`` that no undo reverted."""
    return [
        DECISIONS.c.user_id == bindparam("user_id"),
        DECISIONS.c.choice.in_(list(choices)),
        ~exists().where(_UNDOS.c.reverts_id == DECISIONS.c.id),
    ]


def decided_by_me(choices: Iterable[str] = (*labels.VOTE_CHOICES, "skip")):
    """Whether I have a standing decision of ``choices`` on the entry's image."""
    return exists().where(
        DECISIONS.c.image_id == ENTRIES.c.image_id, *standing_decisions_of_me(choices)
    )
