"""Who holds which queue item: claims, renewals and releases.

The item a reviewer is shown is leased to them (``leases``, primary key image id) for
``LEASE_SECONDS``; the lease row is inserted with ON CONFLICT DO NOTHING, so two reviewers can
never hold one image, and expired leases are deleted before every claim.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    select,
    union_all,
    update,
)

from ...extensions import db
from ...models import (
    Image,
    Lease,
    QueueEntry,
    utcnow,
)
from ..records import labels
from .buckets import ItemHeld, QueueError, QueueFilter, UnknownImage, settings
from .materialise import ensure_current
from .open_entries import (
    DECISIONS,
    ENTRIES,
    LEASES,
    QUEUE_ORDER,
    decided_by_me,
    open_entry_clauses,
    shape_and_params,
    standing_decisions_of_me,
)

MAX_HELD = 8  # leases one reviewer may hold at once (the screen keeps 3)
_CANDIDATES = 8  # items fetched per claim attempt, in case others take some meanwhile
MAX_SKIPS_SERVED = 1_000_000  # "any number of skips" (a 32-bit bound parameter on PostgreSQL)


@dataclass
class Claim:
    """An item leased to a reviewer."""

    image_id: int
    bucket: str | None
    expires_at: datetime
    model_version_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _claim_statement(shape: tuple[bool, ...]) -> Select:
    """In one round trip: my own leased item not in ``:holding`` (``own`` = 1), then the first
    open items nobody holds and I have not decided (``own`` = 0), in queue order, then the items
    I skipped once (``own`` = -1): a skip sends an item to the end of my queue, a second skip
    leaves it to the others."""
    columns = [ENTRIES.c.image_id, ENTRIES.c.bucket, ENTRIES.c.bucket_rank, ENTRIES.c.sort_key]
    # Driven by my few leases (no ORDER BY here, or SQLite would walk the whole queue index to
    # find them); the outer ORDER BY sorts the handful of rows.
    mine = select(LEASES.c.image_id).where(
        LEASES.c.user_id == bindparam("user_id"),
        LEASES.c.image_id.not_in(bindparam("holding", expanding=True)),
    )
    own = select(*columns, literal_column("1").label("own")).where(
        *open_entry_clauses(shape, walk=False), ENTRIES.c.image_id.in_(mine)
    )
    held = exists().where(LEASES.c.image_id == ENTRIES.c.image_id)
    candidates = (
        select(*columns, literal_column("0").label("own"))
        .where(*open_entry_clauses(shape), ~held, ~decided_by_me())
        .order_by(*QUEUE_ORDER)
        .limit(_CANDIDATES)
    )
    skipped_back = (
        select(*columns, literal_column("-1").label("own"))
        .where(
            *open_entry_clauses(shape, walk=False),
            ENTRIES.c.image_id.in_(_skipped_once_by_me()),
            ~held,
            ~decided_by_me(labels.VOTE_CHOICES),
        )
        .order_by(*QUEUE_ORDER)
        .limit(_CANDIDATES)
    )
    parts = (own, candidates, skipped_back)
    both = union_all(*(part.subquery().select() for part in parts)).subquery()
    return select(both).order_by(
        both.c.own.desc(), both.c.bucket_rank, both.c.sort_key, both.c.image_id
    )


def _skipped_once_by_me() -> Select:
    """Image ids I skipped at most ``:max_skips`` times (undone skips do not count)."""
    return (
        select(DECISIONS.c.image_id)
        .where(*standing_decisions_of_me(["skip"]))
        .group_by(DECISIONS.c.image_id)
        .having(func.count() <= bindparam("max_skips"))
    )


_PURGE_EXPIRED = delete(LEASES).where(LEASES.c.expires_at <= bindparam("now"))
_RENEW = (
    update(LEASES)
    .where(LEASES.c.user_id == bindparam("holder"))  # UPDATE binds must not be column names
    .where(LEASES.c.image_id.in_(bindparam("image_ids", expanding=True)))
    .values(expires_at=bindparam("expires"))
)
_HOLDER = select(LEASES.c.user_id).where(
    LEASES.c.image_id == bindparam("image_id"), LEASES.c.expires_at > bindparam("now")
)


def lease_holder(image_id: int) -> int | None:
    """The user id holding an unexpired lease on the image, if any."""
    return db.session.scalar(_HOLDER, {"image_id": image_id, "now": utcnow()})


def claim_next(
    user_id: int,
    filters: QueueFilter | None = None,
    holding: Iterable[int] = (),
    skipped_again: bool = False,
) -> Claim | None:
    """Lease the next item to the user and return it, or None when nothing is left.

    ``holding`` lists the items the reviewer's screen already holds: their leases are renewed and
    they are not served again. Any other unexpired item the user holds is re-served first (a
    reload must not lose it); then the first open item in queue order that nobody holds and the
    user has not already decided or skipped; then the items the user skipped once (with
    ``skipped_again``, also those skipped more often).
    """
    filters = filters or QueueFilter()
    s = settings()
    shape, params = shape_and_params(s, filters, filters.check(s))
    holding = sorted({int(image_id) for image_id in holding})
    if len(holding) > MAX_HELD:
        raise QueueError(f"a reviewer holds at most {MAX_HELD} items at once")
    version_id = ensure_current()
    if version_id is None:
        return None
    now = utcnow()
    expires = now + timedelta(seconds=s.lease_seconds)
    # The first write takes SQLite's write lock: claims are serialised from here to the commit.
    db.session.execute(_PURGE_EXPIRED, {"now": now})
    if holding:
        renew(user_id, holding, expires)
    params |= {"version_id": version_id, "user_id": user_id, "holding": holding}
    params["max_skips"] = MAX_SKIPS_SERVED if skipped_again else 1
    claim = _reserve(user_id, _claim_statement(shape), params, expires)
    db.session.commit()
    if claim is not None:
        claim.model_version_id = version_id
    return claim


def left_for(user_id: int, filters: QueueFilter | None = None) -> dict[str, int]:
    """What the filters still hold that :func:`claim_next` does not serve the user: items other
    reviewers hold now, and items the user skipped twice (left to the others). For the end
    screen, so "nothing left" can say where the rest is."""
    filters = filters or QueueFilter()
    s = settings()
    shape, params = shape_and_params(s, filters, filters.check(s))
    version_id = ensure_current()
    if version_id is None:
        return {"leased_to_others": 0, "skipped": 0}
    params |= {"version_id": version_id, "user_id": user_id, "now": utcnow()}
    open_here = open_entry_clauses(shape, walk=False)
    leased_to_others = exists().where(
        LEASES.c.image_id == ENTRIES.c.image_id,
        LEASES.c.user_id != bindparam("user_id"),
        LEASES.c.expires_at > bindparam("now"),
    )
    skipped_twice = (
        select(DECISIONS.c.image_id)
        .where(*standing_decisions_of_me(["skip"]))
        .group_by(DECISIONS.c.image_id)
        .having(func.count() >= 2)
    )
    count = select(func.count()).select_from(ENTRIES)
    return {
        "leased_to_others": db.session.scalar(count.where(*open_here, leased_to_others), params),
        "skipped": db.session.scalar(
            count.where(
                *open_here,
                ENTRIES.c.image_id.in_(skipped_twice),
                ~decided_by_me(labels.VOTE_CHOICES),
            ),
            params,
        ),
    }


def renew(user_id: int, image_ids: Iterable[int], expires: datetime | None = None) -> None:
    """Extend the user's leases on ``image_ids`` (not committed)."""
    expires = expires or utcnow() + timedelta(seconds=settings().lease_seconds)
    params = {"holder": user_id, "image_ids": list(image_ids), "expires": expires}
    db.session.execute(_RENEW, params)


def _reserve(user_id: int, statement: Select, params: dict, expires: datetime) -> Claim | None:
    """Re-serve my own leased item, else lease the first candidate nobody else took meanwhile."""
    for _attempt in range(5):
        rows = db.session.execute(statement, params).all()
        if not rows:
            return None
        if rows[0].own == 1:  # my own lease, re-served
            renew(user_id, [rows[0].image_id], expires)
            return Claim(rows[0].image_id, rows[0].bucket, expires, extra={"renewed": True})
        for row in rows:
            if not insert_lease(row.image_id, user_id, expires):
                continue
            # PostgreSQL does not serialise claims as SQLite's write lock does: another reviewer
            # may have decided this item (closing it and dropping their lease) after our candidate
            # query ran, and the lease row we just inserted is then theirs, gone. Read again.
            if _still_open(params["version_id"], row.image_id):
                return Claim(row.image_id, row.bucket, expires)
            db.session.execute(  # give it back within this claim's transaction
                delete(LEASES).where(LEASES.c.image_id == row.image_id, LEASES.c.user_id == user_id)
            )
    return None


def _still_open(version_id: int, image_id: int) -> bool:
    """Whether the image's queue entry for the version is open, as committed now."""
    return bool(
        db.session.scalar(
            select(ENTRIES.c.is_open).where(
                ENTRIES.c.model_version_id == version_id, ENTRIES.c.image_id == image_id
            )
        )
    )


def claim_image(user_id: int, image_id: int) -> Claim:
    """Lease one named image to the user (opened directly, or brought back by an undo).

    Raises :class:`ItemHeld` when another reviewer holds it, :class:`UnknownImage` when there
    is no such image.
    """
    if db.session.get(Image, image_id) is None:
        raise UnknownImage(f"no image {image_id}")
    version_id = ensure_current()
    entry = db.session.get(QueueEntry, (version_id, image_id)) if version_id else None
    bucket = entry.bucket if entry is not None and entry.is_open else None
    now = utcnow()
    expires = now + timedelta(seconds=settings().lease_seconds)
    db.session.execute(_PURGE_EXPIRED, {"now": now})
    holder = lease_holder(image_id)
    if holder is not None and holder != user_id:
        db.session.rollback()
        raise ItemHeld(image_id)
    if holder == user_id:
        renew(user_id, [image_id], expires)
    elif not insert_lease(image_id, user_id, expires):
        db.session.rollback()
        raise ItemHeld(image_id)
    db.session.commit()
    return Claim(image_id, bucket, expires, model_version_id=version_id)


def release(user_id: int, image_ids: Iterable[int] | None = None) -> int:
    """Give back the user's leases on ``image_ids`` (all of them with None); returns how many."""
    statement = delete(LEASES).where(LEASES.c.user_id == user_id)
    if image_ids is not None:
        statement = statement.where(LEASES.c.image_id.in_([int(i) for i in image_ids]))
    released = db.session.execute(statement).rowcount
    db.session.commit()
    return released


@functools.cache
def _insert_lease_statement(dialect: str):
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    # rowcount says whether the lease is ours; an INSERT keeps it only when asked (psycopg).
    statement = dialect_insert(LEASES).on_conflict_do_nothing()
    return statement.execution_options(preserve_rowcount=True)


def insert_lease(image_id: int, user_id: int, expires: datetime) -> bool:
    """Insert a lease unless one exists for the image; True when this call got it."""
    dialect = db.session.get_bind().dialect.name
    values = {"image_id": image_id, "user_id": user_id, "expires_at": expires}
    if dialect in ("sqlite", "postgresql"):
        return db.session.execute(_insert_lease_statement(dialect), values).rowcount == 1
    if db.session.get(Lease, image_id) is not None:  # other databases: check, then insert
        return False
    db.session.add(Lease(**values))
    db.session.flush()
    return True
