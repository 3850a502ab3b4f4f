"""The materialised review queue: ``queue_entries``, rebuilt when one of its inputs changes.

The entries are rebuilt, in one INSERT ... SELECT, whenever the active version, its predictions,
the imports or the queue settings change (a fingerprint of them is checked on every use), and kept
open/closed per image as decisions arrive. Serving the next item is then an index walk, whatever
the number of images. The bucket rules themselves are in :mod:`.buckets`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import (
    Check,
    Dataset,
    Image,
    ImageEvidence,
    ImportRun,
    ModelVersion,
    Prediction,
    QueueBuild,
    QueueEntry,
    ReviewRequest,
)
from ..records import labels
from .buckets import CHECKS_DATASET, SORT_KEYS, QueueSettings, bucket_conditions, settings


def active_version_id() -> int | None:
    """The active model version's id, or None before any version is active."""
    return db.session.scalar(
        select(ModelVersion.id).where(ModelVersion.is_active).order_by(ModelVersion.id.desc())
    )


def _active_version_subquery():
    return (
        select(ModelVersion.id)
        .where(ModelVersion.is_active)
        .order_by(ModelVersion.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _inputs(version_id: int | None = None):
    """In one round trip: the version, every input of its queue, and what the last build saw."""
    statement = _inputs_statement(version_id is not None)
    return db.session.execute(statement, {"version_id": version_id}).one()


@functools.cache
def _inputs_statement(named_version: bool) -> Select:
    version = bindparam("version_id") if named_version else _active_version_subquery()
    newest = select(func.max(Prediction.id)).where(Prediction.model_version_id == version)
    last_build = select(QueueBuild).order_by(QueueBuild.id.desc()).limit(1).subquery()
    return select(
        version.label("version_id"),
        newest.scalar_subquery().label("newest_prediction"),
        select(func.count(ImportRun.id)).scalar_subquery().label("imports"),
        select(func.max(ImportRun.id)).scalar_subquery().label("last_import"),
        select(func.max(ImportRun.finished_at)).scalar_subquery().label("last_finish"),
        select(func.count()).select_from(ReviewRequest).scalar_subquery().label("requests"),
        select(func.max(ReviewRequest.created_at)).scalar_subquery().label("last_request"),
        select(last_build.c.model_version_id).scalar_subquery().label("built_version"),
        select(last_build.c.fingerprint).scalar_subquery().label("built_fingerprint"),
    )


def _digest(inputs, s: QueueSettings) -> str:
    """A digest of every input of the queue entries."""
    payload = [
        inputs.version_id,
        inputs.newest_prediction,
        [str(inputs.imports), str(inputs.last_import), str(inputs.last_finish)],
        [str(inputs.requests), str(inputs.last_request)],
        s.signature(),
    ]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def fingerprint(version_id: int, s: QueueSettings | None = None) -> str:
    """The digest of the current inputs of ``version_id``'s queue."""
    return _digest(_inputs(version_id), s or settings())


def ensure_current() -> int | None:
    """Rebuild the queue entries if any input changed; return the active version id (or None).

    One query when nothing changed, so every queue request can afford it.
    """
    s = settings()
    inputs = _inputs()
    if inputs.version_id is None:
        if inputs.built_version is not None:
            _clear()
            db.session.commit()
        return None
    digest = _digest(inputs, s)
    if inputs.built_version != inputs.version_id or inputs.built_fingerprint != digest:
        rebuild(inputs.version_id, s, digest)
    return inputs.version_id


def invalidate() -> None:
    """Forget the current build, so the next use rebuilds (call after relabelling images)."""
    db.session.execute(delete(QueueBuild))
    db.session.commit()


def rebuild(
    version_id: int | None = None, s: QueueSettings | None = None, digest: str | None = None
) -> QueueBuild | None:
    """Rebuild the queue entries of ``version_id`` (default: the active one) in one statement.

    Where two processes rebuild at once, SQLite runs one after the other; on a database with
    concurrent writers the loser's insert conflicts, and it keeps the winner's build.
    """
    s = s or settings()
    version_id = version_id if version_id is not None else active_version_id()
    started = time.perf_counter()
    _clear()
    if version_id is None:
        db.session.commit()
        return None
    try:
        inserted = db.session.execute(_build_statement(version_id, s)).rowcount
    except IntegrityError:
        db.session.rollback()
        return db.session.scalar(select(QueueBuild).order_by(QueueBuild.id.desc()))
    if inserted < 0:  # psycopg does not count the rows of an INSERT ... SELECT
        inserted = db.session.scalar(select(func.count()).select_from(QueueEntry))
    db.session.execute(
        update(QueueEntry)
        .where(QueueEntry.image_id.in_(labels.settled_image_ids_query(s.reviews_per_item)))
        .values(is_open=False)
    )
    build = QueueBuild(
        model_version_id=version_id,
        fingerprint=digest or fingerprint(version_id, s),
        n_entries=inserted,
        seconds=time.perf_counter() - started,
    )
    db.session.add(build)
    db.session.commit()
    return build


def _clear() -> None:
    db.session.execute(delete(QueueEntry))
    db.session.execute(delete(QueueBuild))


def _not_an_unsent_check() -> ColumnElement[bool]:
    """Images that arrived through a check join the queue only once sent to review."""
    checks_dataset = select(Dataset.id).where(Dataset.name == CHECKS_DATASET).scalar_subquery()
    sent = exists().where(Check.image_id == Image.id, Check.sent_to_review_at.is_not(None))
    return or_(Image.dataset_id != func.coalesce(checks_dataset, -1), sent)


def _build_statement(version_id: int, s: QueueSettings):
    """INSERT INTO queue_entries SELECT ... over the version's predictions joined to images."""
    conditions = bucket_conditions(s)
    rank = case(*[(conditions[name], index) for index, name in enumerate(s.buckets)])
    key = case(*[(conditions[name], SORT_KEYS[name]()) for name in s.buckets])
    scored = (
        select(
            Prediction.image_id,
            rank.label("rank"),
            key.label("key"),
            Image.split,
            Prediction.verdict,
        )
        .join(Image, Image.id == Prediction.image_id)
        .outerjoin(ImageEvidence, ImageEvidence.image_id == Prediction.image_id)
        .where(Prediction.model_version_id == version_id, _not_an_unsent_check())
        .subquery()
    )
    bucket_name = case(dict(enumerate(s.buckets)), value=scored.c.rank)
    rows = select(
        literal(version_id),
        scored.c.image_id,
        bucket_name,
        scored.c.rank,
        scored.c.key,
        scored.c.split,
        scored.c.verdict,
        true(),
    ).where(scored.c.rank.is_not(None))
    columns = [
        "model_version_id",
        "image_id",
        "bucket",
        "bucket_rank",
        "sort_key",
        "split",
        "verdict",
        "is_open",
    ]
    # An INSERT's rowcount is kept only when asked for (psycopg's cursor is closed by then).
    return insert(QueueEntry).from_select(columns, rows).execution_options(preserve_rowcount=True)
