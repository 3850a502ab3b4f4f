"""Reading the review queue: the open items in order, and how many are left per bucket.

What an item is and why it is queued: :mod:`.buckets`; how the entries are kept current:
:mod:`.materialise`; who holds which item: :mod:`.leases`.
"""

from __future__ import annotations

import functools

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    exists,
    func,
    select,
    update,
)

from ...extensions import db
from ...models import (
    Dataset,
    Image,
    Prediction,
    utcnow,
)
from .buckets import QueueFilter, QueueItem, reason, settings
from .materialise import ensure_current
from .open_entries import (
    ENTRIES,
    LEASES,
    QUEUE_ORDER,
    open_entry_clauses,
    shape_and_params,
)


@functools.cache
def _list_statement(shape: tuple[bool, ...]) -> Select:
    images, predictions = Image.__table__, Prediction.__table__
    leased = exists().where(
        LEASES.c.image_id == ENTRIES.c.image_id, LEASES.c.expires_at > bindparam("now")
    )
    return (
        select(
            ENTRIES.c.image_id,
            images.c.file_name,
            Dataset.__table__.c.name,
            ENTRIES.c.bucket,
            images.c.label,
            predictions.c.verdict,
            predictions.c.p_fake,
            predictions.c.label_issue_score,
            predictions.c.ood_score,
            images.c.split,
            predictions.c.oos_p_fake,
            leased,
        )
        .join(images, images.c.id == ENTRIES.c.image_id)
        .join(Dataset.__table__, Dataset.__table__.c.id == images.c.dataset_id)
        .join(
            predictions,
            and_(
                predictions.c.image_id == ENTRIES.c.image_id,
                predictions.c.model_version_id == ENTRIES.c.model_version_id,
            ),
        )
        .where(*open_entry_clauses(shape))
        .order_by(*QUEUE_ORDER)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


@functools.cache
def _counts_statement(shape: tuple[bool, ...]) -> Select:
    return (
        select(ENTRIES.c.bucket_rank, func.count())
        .where(*open_entry_clauses(shape))
        .group_by(ENTRIES.c.bucket_rank)
    )


_SET_OPEN = (
    update(ENTRIES)
    .where(ENTRIES.c.image_id == bindparam("image"))
    .values(is_open=bindparam("open_now"))
)


def set_open(image_id: int, is_open: bool) -> None:
    """Put an image back in the queue or take it out (called as its decisions change)."""
    db.session.execute(_SET_OPEN, {"image": image_id, "open_now": is_open})


def list_items(
    filters: QueueFilter | None = None, limit: int = 50, offset: int = 0
) -> list[QueueItem]:
    """The open queue in order (leased items included and flagged)."""
    filters = filters or QueueFilter()
    s = settings()
    shape, params = shape_and_params(s, filters, filters.check(s))
    version_id = ensure_current()
    if version_id is None:
        return []
    params |= {
        "version_id": version_id,
        "now": utcnow(),
        "limit": max(0, limit),
        "offset": max(0, offset),
    }
    items = [QueueItem(*row) for row in db.session.execute(_list_statement(shape), params)]
    for item in items:
        item.reason = reason(item, s)
    return items


def counts(filters: QueueFilter | None = None) -> dict[str, int]:
    """Open items per bucket, every configured bucket in order (zeros included)."""
    filters = filters or QueueFilter()
    s = settings()
    shape, params = shape_and_params(s, filters, filters.check(s))
    result = dict.fromkeys(s.buckets, 0)
    version_id = ensure_current()
    if version_id is None:
        return result
    rows = db.session.execute(_counts_statement(shape), params | {"version_id": version_id})
    for rank, number in rows:
        result[s.buckets[rank]] = number
    return result
