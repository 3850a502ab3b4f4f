"""The review queue: which images most deserve a human's time, in what order, and who holds which.

From the active model version's stored scores, each image falls in the first of these buckets (order
and thresholds from the configuration) that it meets:

- ``requested``: an admin sent it to review from the image browser (``review_requests``);
- ``label_issue``: labelled, and the out-of-sample label-issue score reaches the threshold;
- ``evidence``: strong evidence about the image (``image_evidence.claims``: valid content
  credentials, generator traces, a watermark, camera metadata with a near duplicate reviewed
  REAL) contradicts its label or the verdict;
- ``misclassified``: labelled, and the verdict disagrees with the label;
- ``uncertain``: calibrated p(fake) inside the uncertain band;
- ``ood``: out-of-distribution score at or above the threshold;
- ``audit``: a random share (``audit_key`` below the rate) of the confident verdicts of both
  classes: verdicts (made at the version's FAKE threshold) whose p(fake) lies outside the
  uncertain band on the verdict's side.

Unlabelled images can only meet ``requested``, the evidence bucket and the last three. Images
that arrived through a check (the ``checks`` dataset) enter the queue only once someone sent them
to review. Within a bucket the most informative item comes first (see ``_SORT_KEYS``), ties broken
by image id, so the CLI, the API and the review screen all give the same order. Images decided
enough times (see
:mod:`webapp.services.records.labels`) leave the queue.

The queue is materialised in ``queue_entries``: rebuilt, in one INSERT ... SELECT, whenever the
active version, its predictions, the imports or the queue settings change (a fingerprint of them is
checked on every use), and kept open/closed per image as decisions arrive. Serving the next item is
then an index walk, whatever the number of images.

Claims: the item a reviewer is shown is leased to them (``leases``, primary key image id) for
``LEASE_SECONDS``; the lease row is inserted with ON CONFLICT DO NOTHING, so two reviewers can never
hold one image, and expired leases are deleted before every claim.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import (
    Check,
    Dataset,
    DatasetImage,
    Image,
    ImageEvidence,
    ImportRun,
    Label,
    Lease,
    ModelVersion,
    Prediction,
    QueueBuild,
    QueueEntry,
    ReviewDecision,
    ReviewRequest,
    Split,
    utcnow,
)
from ..records import labels
from ..records.lookup import UnknownName

BUCKET_TITLES = {
    "requested": "Sent to review by an admin",
    "label_issue": "Suspected label mistake",
    "evidence": "Evidence disagrees",
    "misclassified": "Misclassified",
    "uncertain": "Uncertain",
    "ood": "Out of distribution",
    "audit": "Audit sample",
}
CHECKS_DATASET = "checks"  # where checked images are stored (webapp.services.checking)
MAX_HELD = 8  # leases one reviewer may hold at once (the screen keeps 3)
_CANDIDATES = 8  # items fetched per claim attempt, in case others take some meanwhile
MAX_SKIPS_SERVED = 1_000_000  # "any number of skips" (a 32-bit bound parameter on PostgreSQL)


class QueueError(ValueError):
    """A bad queue request (unknown bucket, dataset, split...): the message says what to fix."""


@dataclass(frozen=True)
class QueueSettings:
    """The configuration the queue is built from."""

    buckets: tuple[str, ...]
    uncertain_low: float
    uncertain_high: float
    label_issue_threshold: float
    ood_threshold: float
    audit_rate: float
    reviews_per_item: int
    lease_seconds: int

    @classmethod
    def from_config(cls, config: Any = None) -> QueueSettings:
        """Read and check the settings from ``config`` (default: the current app's)."""
        config = config if config is not None else current_app.config
        buckets = tuple(name.strip() for name in config["QUEUE_BUCKETS"] if name.strip())
        unknown = [name for name in buckets if name not in BUCKET_TITLES]
        if unknown or len(set(buckets)) != len(buckets) or not buckets:
            raise QueueError(
                f"QUEUE_BUCKETS must name each of {', '.join(BUCKET_TITLES)} at most once; "
                f"got {', '.join(buckets) or 'nothing'}"
            )
        settings = cls(
            buckets=buckets,
            uncertain_low=float(config["UNCERTAIN_LOW"]),
            uncertain_high=float(config["UNCERTAIN_HIGH"]),
            label_issue_threshold=float(config["LABEL_ISSUE_THRESHOLD"]),
            ood_threshold=float(config["OOD_THRESHOLD"]),
            audit_rate=float(config["AUDIT_RATE"]),
            reviews_per_item=max(1, int(config["REVIEWS_PER_ITEM"])),
            lease_seconds=max(1, int(config["LEASE_SECONDS"])),
        )
        if not 0.0 <= settings.uncertain_low <= 0.5 <= settings.uncertain_high <= 1.0:
            raise QueueError("the uncertain band must satisfy 0 <= LOW <= 0.5 <= HIGH <= 1")
        return settings

    def signature(self) -> str:
        """Everything that shapes the queue entries (not the lease length)."""
        values = asdict(self)
        values.pop("lease_seconds")
        return json.dumps(values, sort_keys=True)


@dataclass(frozen=True)
class QueueFilter:
    """Optional restrictions of the queue; None means any."""

    dataset: str | None = None
    split: str | None = None
    bucket: str | None = None
    verdict: str | None = None

    def check(self, settings: QueueSettings) -> int | None:
        """Raise :class:`QueueError` on a bad value; return the dataset's id when one is named."""
        if self.bucket is not None and self.bucket not in settings.buckets:
            raise QueueError(
                f"unknown bucket {self.bucket!r}: one of {', '.join(settings.buckets)}"
            )
        if self.split is not None and self.split not in set(Split):
            raise QueueError(f"unknown split {self.split!r}: one of train, val, test")
        if self.verdict is not None and self.verdict not in (Label.REAL, Label.FAKE):
            raise QueueError(f"unknown verdict {self.verdict!r}: real or fake")
        if self.dataset is None:
            return None
        dataset_id = db.session.scalar(select(Dataset.id).where(Dataset.name == self.dataset))
        if dataset_id is None:
            raise UnknownDataset(f"unknown dataset {self.dataset!r}")
        return dataset_id


@dataclass
class QueueItem:
    """One queue entry as scripts and the screen see it."""

    image_id: int
    file_name: str
    dataset: str
    bucket: str
    label: str
    verdict: str
    p_fake: float
    label_issue_score: float | None
    ood_score: float | None
    split: str = ""
    oos_p_fake: float | None = None
    leased: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``image_id``, ``file_name``, ``dataset``, ``bucket``, ``label``, ...)."""
        return asdict(self)


@dataclass
class Claim:
    """An item leased to a reviewer."""

    image_id: int
    bucket: str | None
    expires_at: datetime
    model_version_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def settings() -> QueueSettings:
    """The current app's queue settings."""
    return QueueSettings.from_config()


# ----------------------------------------------------------------------------- buckets


def _labelled() -> ColumnElement[bool]:
    return Image.label.in_((Label.REAL, Label.FAKE))


def _conditions(s: QueueSettings) -> dict[str, ColumnElement[bool]]:
    """SQL membership test of each bucket (without the precedence of earlier buckets)."""
    return {
        "requested": Prediction.image_id.in_(select(ReviewRequest.image_id)),
        "label_issue": and_(
            _labelled(),
            Prediction.label_issue_score.is_not(None),
            Prediction.label_issue_score >= s.label_issue_threshold,
        ),
        "evidence": and_(
            ImageEvidence.claims.is_not(None),
            or_(
                and_(_labelled(), ImageEvidence.claims != Image.label),
                ImageEvidence.claims != Prediction.verdict,
            ),
        ),
        "misclassified": and_(_labelled(), Prediction.verdict != Image.label),
        "uncertain": and_(
            Prediction.p_fake >= s.uncertain_low, Prediction.p_fake <= s.uncertain_high
        ),
        "ood": and_(Prediction.ood_score.is_not(None), Prediction.ood_score >= s.ood_threshold),
        # Confident: outside the uncertain band, on the side of the version's threshold that
        # its verdict says (a REAL call between the band and a high threshold is not confident).
        "audit": and_(
            Prediction.audit_key < s.audit_rate,
            or_(
                and_(Prediction.verdict == Label.REAL, Prediction.p_fake < s.uncertain_low),
                and_(Prediction.verdict == Label.FAKE, Prediction.p_fake > s.uncertain_high),
            ),
        ),
    }


# Ascending sort key per bucket: the most informative item first.
_SORT_KEYS = {
    "requested": lambda: func.abs(Prediction.p_fake - 0.5),  # the closest call first
    "label_issue": lambda: -Prediction.label_issue_score,  # the strongest suspicion
    "evidence": lambda: -func.abs(Prediction.p_fake - 0.5),  # the most confident contradiction
    "misclassified": lambda: -func.abs(Prediction.p_fake - 0.5),  # the most confident mistake
    "uncertain": lambda: func.abs(Prediction.p_fake - 0.5),  # the closest to a coin toss
    "ood": lambda: -Prediction.ood_score,  # the least like the training data
    "audit": lambda: Prediction.audit_key,  # random, both classes
}


def reason(item: QueueItem | dict[str, Any], s: QueueSettings | None = None) -> str:
    """Why an item is in the queue, in words a reviewer can check against the numbers."""
    get = item.get if isinstance(item, dict) else lambda key: getattr(item, key)
    s = s or settings()
    bucket, label, verdict, p_fake = get("bucket"), get("label"), get("verdict"), get("p_fake")
    confidence = max(p_fake, 1 - p_fake)
    if bucket == "requested":
        return "An admin sent this image to review from the image browser."
    if bucket == "label_issue":
        oos = get("oos_p_fake")
        oos_text = f"out of sample the model gives p(fake) = {oos:.2f}" if oos is not None else ""
        return (
            f"Labelled {label.upper()}, but {oos_text or 'the model disagrees'}: "
            f"label-issue score {get('label_issue_score'):.2f} ≥ {s.label_issue_threshold:.2f}."
        )
    if bucket == "evidence":
        return (
            "Strong evidence (content credentials, generator traces, a watermark, or camera "
            f"metadata and a near duplicate reviewed REAL) contradicts the label {label.upper()} "
            f"or the model's {verdict.upper()}."
        )
    if bucket == "misclassified":
        return (
            f"The model says {verdict.upper()} with {confidence:.0%} confidence; "
            f"the label says {label.upper()}."
        )
    if bucket == "uncertain":
        return (
            f"Calibrated p(fake) = {p_fake:.2f}, inside the uncertain band "
            f"{s.uncertain_low:.2f}–{s.uncertain_high:.2f}."
        )
    if bucket == "ood":
        return (
            f"Out-of-distribution score {get('ood_score'):.2f} ≥ {s.ood_threshold:.2f}: "
            "unlike the images the model was trained on."
        )
    if bucket == "audit":
        return (
            f"Random audit of confident calls ({s.audit_rate:.0%} sample): the model says "
            f"{verdict.upper()} with {confidence:.0%} confidence."
        )
    return "Opened directly: not in the queue."


# ----------------------------------------------------------------------------- building


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
    conditions = _conditions(s)
    rank = case(*[(conditions[name], index) for index, name in enumerate(s.buckets)])
    key = case(*[(conditions[name], _SORT_KEYS[name]()) for name in s.buckets])
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


# ----------------------------------------------------------------------------- prepared SQL
# The statements served per request are built once per filter shape, with bind parameters, on the
# tables (Core): building a SQLAlchemy statement costs more than SQLite takes to run it, and a
# statement object keeps its compiled SQL.

_ENTRIES = QueueEntry.__table__
_LEASES = Lease.__table__
_DECISIONS = ReviewDecision.__table__
_UNDOS = ReviewDecision.__table__.alias("undo_row")
_FIRST_SEEN = Image.__table__.alias("first_seen")  # the outer query may join images already
_QUEUE_ORDER = (_ENTRIES.c.bucket_rank, _ENTRIES.c.sort_key, _ENTRIES.c.image_id)
_FILTER_PARAMS = ("bucket_rank", "split", "verdict", "dataset_id")


def _shape_and_params(
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


def _open_entry_clauses(shape: tuple[bool, ...], walk: bool = True) -> list[ColumnElement[bool]]:
    """WHERE clauses of the open entries of version ``:version_id`` that pass the filters.

    ``walk=False`` hides ``is_open`` from the planner, for queries driven by a few known image
    ids: it then looks them up by primary key instead of walking the queue-order index.
    """
    bucket, split, verdict, dataset = shape
    is_open = _ENTRIES.c.is_open if walk else func.coalesce(_ENTRIES.c.is_open, false())
    clauses = [_ENTRIES.c.model_version_id == bindparam("version_id"), is_open == true()]
    if bucket:
        clauses.append(_ENTRIES.c.bucket_rank == bindparam("bucket_rank"))
    if split:
        clauses.append(_ENTRIES.c.split == bindparam("split"))
    if verdict:
        clauses.append(_ENTRIES.c.verdict == bindparam("verdict"))
    if dataset:
        members = DatasetImage.__table__
        member = exists().where(
            members.c.image_id == _ENTRIES.c.image_id,
            members.c.dataset_id == bindparam("dataset_id"),
        )
        first_seen = exists().where(
            _FIRST_SEEN.c.id == _ENTRIES.c.image_id,
            _FIRST_SEEN.c.dataset_id == bindparam("dataset_id"),
        )
        clauses.append(or_(member, first_seen))
    return clauses


@functools.cache
def _claim_statement(shape: tuple[bool, ...]) -> Select:
    """In one round trip: my own leased item not in ``:holding`` (``own`` = 1), then the first
    open items nobody holds and I have not decided (``own`` = 0), in queue order, then the items
    I skipped once (``own`` = -1): a skip sends an item to the end of my queue, a second skip
    leaves it to the others."""
    columns = [_ENTRIES.c.image_id, _ENTRIES.c.bucket, _ENTRIES.c.bucket_rank, _ENTRIES.c.sort_key]
    # Driven by my few leases (no ORDER BY here, or SQLite would walk the whole queue index to
    # find them); the outer ORDER BY sorts the handful of rows.
    mine = select(_LEASES.c.image_id).where(
        _LEASES.c.user_id == bindparam("user_id"),
        _LEASES.c.image_id.not_in(bindparam("holding", expanding=True)),
    )
    own = select(*columns, literal_column("1").label("own")).where(
        *_open_entry_clauses(shape, walk=False), _ENTRIES.c.image_id.in_(mine)
    )
    held = exists().where(_LEASES.c.image_id == _ENTRIES.c.image_id)
    candidates = (
        select(*columns, literal_column("0").label("own"))
        .where(*_open_entry_clauses(shape), ~held, ~_decided_by_me())
        .order_by(*_QUEUE_ORDER)
        .limit(_CANDIDATES)
    )
    skipped_back = (
        select(*columns, literal_column("-1").label("own"))
        .where(
            *_open_entry_clauses(shape, walk=False),
            _ENTRIES.c.image_id.in_(_skipped_once_by_me()),
            ~held,
            ~_decided_by_me(labels.VOTE_CHOICES),
        )
        .order_by(*_QUEUE_ORDER)
        .limit(_CANDIDATES)
    )
    parts = (own, candidates, skipped_back)
    both = union_all(*(part.subquery().select() for part in parts)).subquery()
    return select(both).order_by(
        both.c.own.desc(), both.c.bucket_rank, both.c.sort_key, both.c.image_id
    )


def _standing_decisions_of_me(choices: Iterable[str]) -> list[ColumnElement[bool]]:
    """WHERE clauses: my decisions with one of ``choices`` that no undo reverted."""
    return [
        _DECISIONS.c.user_id == bindparam("user_id"),
        _DECISIONS.c.choice.in_(list(choices)),
        ~exists().where(_UNDOS.c.reverts_id == _DECISIONS.c.id),
    ]


def _decided_by_me(choices: Iterable[str] = (*labels.VOTE_CHOICES, "skip")):
    """Whether I have a standing decision of ``choices`` on the entry's image."""
    return exists().where(
        _DECISIONS.c.image_id == _ENTRIES.c.image_id, *_standing_decisions_of_me(choices)
    )


def _skipped_once_by_me() -> Select:
    """Image ids I skipped at most ``:max_skips`` times (undone skips do not count)."""
    return (
        select(_DECISIONS.c.image_id)
        .where(*_standing_decisions_of_me(["skip"]))
        .group_by(_DECISIONS.c.image_id)
        .having(func.count() <= bindparam("max_skips"))
    )


@functools.cache
def _list_statement(shape: tuple[bool, ...]) -> Select:
    images, predictions = Image.__table__, Prediction.__table__
    leased = exists().where(
        _LEASES.c.image_id == _ENTRIES.c.image_id, _LEASES.c.expires_at > bindparam("now")
    )
    return (
        select(
            _ENTRIES.c.image_id,
            images.c.file_name,
            Dataset.__table__.c.name,
            _ENTRIES.c.bucket,
            images.c.label,
            predictions.c.verdict,
            predictions.c.p_fake,
            predictions.c.label_issue_score,
            predictions.c.ood_score,
            images.c.split,
            predictions.c.oos_p_fake,
            leased,
        )
        .join(images, images.c.id == _ENTRIES.c.image_id)
        .join(Dataset.__table__, Dataset.__table__.c.id == images.c.dataset_id)
        .join(
            predictions,
            and_(
                predictions.c.image_id == _ENTRIES.c.image_id,
                predictions.c.model_version_id == _ENTRIES.c.model_version_id,
            ),
        )
        .where(*_open_entry_clauses(shape))
        .order_by(*_QUEUE_ORDER)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


@functools.cache
def _counts_statement(shape: tuple[bool, ...]) -> Select:
    return (
        select(_ENTRIES.c.bucket_rank, func.count())
        .where(*_open_entry_clauses(shape))
        .group_by(_ENTRIES.c.bucket_rank)
    )


_PURGE_EXPIRED = delete(_LEASES).where(_LEASES.c.expires_at <= bindparam("now"))
_RENEW = (
    update(_LEASES)
    .where(_LEASES.c.user_id == bindparam("holder"))  # UPDATE binds must not be column names
    .where(_LEASES.c.image_id.in_(bindparam("image_ids", expanding=True)))
    .values(expires_at=bindparam("expires"))
)
_HOLDER = select(_LEASES.c.user_id).where(
    _LEASES.c.image_id == bindparam("image_id"), _LEASES.c.expires_at > bindparam("now")
)
_SET_OPEN = (
    update(_ENTRIES)
    .where(_ENTRIES.c.image_id == bindparam("image"))
    .values(is_open=bindparam("open_now"))
)


# ----------------------------------------------------------------------------- reading


def set_open(image_id: int, is_open: bool) -> None:
    """Put an image back in the queue or take it out (called as its decisions change)."""
    db.session.execute(_SET_OPEN, {"image": image_id, "open_now": is_open})


def list_items(
    filters: QueueFilter | None = None, limit: int = 50, offset: int = 0
) -> list[QueueItem]:
    """The open queue in order (leased items included and flagged)."""
    filters = filters or QueueFilter()
    s = settings()
    shape, params = _shape_and_params(s, filters, filters.check(s))
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
    shape, params = _shape_and_params(s, filters, filters.check(s))
    result = dict.fromkeys(s.buckets, 0)
    version_id = ensure_current()
    if version_id is None:
        return result
    rows = db.session.execute(_counts_statement(shape), params | {"version_id": version_id})
    for rank, number in rows:
        result[s.buckets[rank]] = number
    return result


# ----------------------------------------------------------------------------- leases


def lease_holder(image_id: int) -> int | None:
    """The user id holding an unexpired lease on the image, if any."""
    return db.session.scalar(_HOLDER, {"image_id": image_id, "now": utcnow()})


def held_by(user_id: int) -> list[int]:
    """Image ids the user holds unexpired leases on."""
    return list(
        db.session.scalars(
            select(Lease.image_id).where(Lease.user_id == user_id, Lease.expires_at > utcnow())
        )
    )


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
    shape, params = _shape_and_params(s, filters, filters.check(s))
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
    shape, params = _shape_and_params(s, filters, filters.check(s))
    version_id = ensure_current()
    if version_id is None:
        return {"leased_to_others": 0, "skipped": 0}
    params |= {"version_id": version_id, "user_id": user_id, "now": utcnow()}
    open_here = _open_entry_clauses(shape, walk=False)
    leased_to_others = exists().where(
        _LEASES.c.image_id == _ENTRIES.c.image_id,
        _LEASES.c.user_id != bindparam("user_id"),
        _LEASES.c.expires_at > bindparam("now"),
    )
    skipped_twice = (
        select(_DECISIONS.c.image_id)
        .where(*_standing_decisions_of_me(["skip"]))
        .group_by(_DECISIONS.c.image_id)
        .having(func.count() >= 2)
    )
    count = select(func.count()).select_from(_ENTRIES)
    return {
        "leased_to_others": db.session.scalar(count.where(*open_here, leased_to_others), params),
        "skipped": db.session.scalar(
            count.where(
                *open_here,
                _ENTRIES.c.image_id.in_(skipped_twice),
                ~_decided_by_me(labels.VOTE_CHOICES),
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
                delete(_LEASES).where(
                    _LEASES.c.image_id == row.image_id, _LEASES.c.user_id == user_id
                )
            )
    return None


def _still_open(version_id: int, image_id: int) -> bool:
    """Whether the image's queue entry for the version is open, as committed now."""
    return bool(
        db.session.scalar(
            select(_ENTRIES.c.is_open).where(
                _ENTRIES.c.model_version_id == version_id, _ENTRIES.c.image_id == image_id
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
    statement = delete(_LEASES).where(_LEASES.c.user_id == user_id)
    if image_ids is not None:
        statement = statement.where(_LEASES.c.image_id.in_([int(i) for i in image_ids]))
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
    statement = dialect_insert(_LEASES).on_conflict_do_nothing()
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


class UnknownDataset(QueueError, UnknownName):
    """A filter names a dataset that does not exist."""


class UnknownImage(QueueError, UnknownName):
    """A claim names an image that does not exist."""


class ItemHeld(QueueError):
    """Another reviewer holds the lease on this image."""

    def __init__(self, image_id: int) -> None:
        super().__init__(f"image {image_id} is being reviewed by someone else right now")
        self.image_id = image_id
