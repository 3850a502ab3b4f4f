"""The schema: datasets, images, predictions, model versions, review decisions, users and jobs.

Predictions and review decisions are append-only: a new model version or a new verdict adds rows,
nothing is overwritten, so every past call can be audited.

(Over 400 lines: every table in one module, so the schema reads in one place.)
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


def utcnow() -> datetime:
    """Timezone-naive UTC now, the form every timestamp column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class Label(enum.StrEnum):
    """A ground-truth or chosen label."""

    REAL = "real"
    FAKE = "fake"
    UNKNOWN = "unknown"


class Split(enum.StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class Role(enum.StrEnum):
    REVIEWER = "reviewer"
    ADMIN = "admin"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


def new_session_token() -> str:
    """A fresh random session token (see ``User.session_token``)."""
    return secrets.token_hex(16)


class User(UserMixin, db.Model):
    """A reviewer or an admin. Passwords are stored as slow (scrypt) hashes.

    ``session_token`` is part of the id every session and remember-me cookie carries; a new one
    (at logout, or when the password changes) ends all of this user's sessions at once.
    """

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.REVIEWER)
    is_enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    session_token: Mapped[str] = mapped_column(
        String(64), default=new_session_token, server_default=""
    )

    def set_password(self, password: str) -> None:
        """Store the hash of ``password``; every session opened with the old one ends."""
        self.password_hash = generate_password_hash(password, method="scrypt")
        self.end_sessions()

    def end_sessions(self) -> None:
        """Rotate the session token: every session and remember cookie of this user ends."""
        self.session_token = new_session_token()

    def get_id(self) -> str:
        """Flask-Login's id for cookies: ``<id>:<session token>``."""
        return f"{self.id}:{self.session_token}"

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def is_active(self) -> bool:  # Flask-Login: disabled accounts cannot log in
        return self.is_enabled

    def __repr__(self) -> str:
        return f"<User {self.username} {self.role}>"


class LoginFailure(db.Model):
    """One failed login: the name tried and the address it came from. Kept in the database so
    every web worker and process counts the same failures (login throttling); a successful
    login deletes its name's rows, and rows older than a day are of no further use."""

    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ApiToken(db.Model):
    """A bearer token for scripts; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(120))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    user: Mapped[User] = relationship()


class Dataset(db.Model):
    """A named collection of images; evaluation-only datasets are never trained on."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    evaluation_only: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Archived datasets stay stored but leave reviewers' filters and new trainings.
    archived_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<Dataset {self.name}{' eval-only' if self.evaluation_only else ''}>"


class Image(db.Model):
    """One distinct image content, stored once under its SHA-256 however often it is imported."""

    __tablename__ = "images"
    __table_args__ = (
        # The image browser: format and size filters, and keyset pages sorted by size.
        Index("ix_images_format_bytes", "format", "bytes"),
        Index("ix_images_bytes_id", "bytes", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # The dataset it first arrived in; other datasets link it through DatasetImage.
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    file_name: Mapped[str] = mapped_column(String(500))
    original_path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int]
    height: Mapped[int]
    bytes: Mapped[int]
    mode: Mapped[str] = mapped_column(String(16))
    has_exif: Mapped[bool] = mapped_column(default=False)
    exif_summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    jpeg_quality: Mapped[int | None]
    label: Mapped[str] = mapped_column(String(8), default=Label.UNKNOWN, index=True)
    label_source: Mapped[str] = mapped_column(String(200), default="")
    label_conflict: Mapped[bool] = mapped_column(default=False)
    split: Mapped[str] = mapped_column(String(8), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dataset: Mapped[Dataset] = relationship()

    def __repr__(self) -> str:
        return f"<Image {self.id} {self.sha256[:10]} {self.label}/{self.split}>"


class DatasetImage(db.Model):
    """Membership of an image in a dataset, with the name and label that import gave it."""

    __tablename__ = "dataset_images"
    __table_args__ = (UniqueConstraint("dataset_id", "image_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"))
    original_path: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(8), default=Label.UNKNOWN)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImportRun(db.Model):
    """One run of an import, with its report (counts, rejections, warnings)."""

    __tablename__ = "imports"
    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL once the dataset is gone (a failed or empty import removes the dataset it created).
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"), index=True)
    dataset_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    source: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=JobState.RUNNING)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ChannelStats(db.Model):
    """Per-channel mean and standard deviation over a set of cached images, reused by training."""

    __tablename__ = "channel_stats"
    id: Mapped[int] = mapped_column(primary_key=True)
    image_size: Mapped[int]
    images_sha256: Mapped[str] = mapped_column(String(64), index=True)
    n_images: Mapped[int]
    mean: Mapped[list[float]] = mapped_column(JSON)
    std: Mapped[list[float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(db.Model):
    """A trained network, its checkpoint and its metrics. At most one is active."""

    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    is_active: Mapped[bool] = mapped_column(default=False, index=True)
    kind: Mapped[str] = mapped_column(String(16), default="full")  # full | head | calib
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    checkpoint_path: Mapped[str] = mapped_column(Text)
    architecture: Mapped[str] = mapped_column(String(40), default="resnet18")
    image_size: Mapped[int]
    init_weights: Mapped[str] = mapped_column(String(40))  # "imagenet" | "random"
    temperature: Mapped[float] = mapped_column(default=1.0)
    # The operating point: FAKE when calibrated p_fake >= threshold (0.5 for older versions).
    # Fitted on validation images for REALFAKE_TARGET_FPR; read it through this attribute.
    threshold: Mapped[float] = mapped_column(default=0.5, server_default=text("0.5"))
    train_args: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    history: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    train_set_sha256: Mapped[str] = mapped_column(String(64), default="")
    n_train: Mapped[int] = mapped_column(default=0)
    labels_changed: Mapped[int | None]
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    activated_at: Mapped[datetime | None]
    parent: Mapped[ModelVersion | None] = relationship(remote_side=[id])

    def __repr__(self) -> str:
        return f"<ModelVersion {self.name}{' active' if self.is_active else ''}>"

    @property
    def preset(self) -> str:
        """The training recipe it started from ("custom" when none was named, as before)."""
        args = self.train_args or {}
        return args.get("preset") or args.get("preset_name") or "custom"

    @property
    def input_mode(self) -> str:
        """How its network reads an image: "resize" (also every version from before input
        modes) or "crops" (native-resolution crops, scored pooled: ``model.crops``)."""
        return (self.train_args or {}).get("input_mode") or "resize"

    @property
    def residual(self) -> str:
        """The fixed residual input its network reads beside the colours (``model.network``):
        "none" (also every version from before residual inputs), "npr" or "highpass"."""
        return (self.train_args or {}).get("residual") or "none"

    @property
    def epochs(self) -> int | None:
        """The epochs it was configured to train (None when not recorded)."""
        value = (self.train_args or {}).get("epochs")
        return None if value is None else int(value)


class Prediction(db.Model):
    """A model version's scores for one image. One row per (image, version); never updated."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("model_version_id", "image_id"),
        Index("ix_predictions_version_pfake", "model_version_id", "p_fake"),
        # The newest prediction id of a version, in O(log n): part of the queue's fingerprint.
        Index("ix_predictions_version_id", "model_version_id", "id"),
        # The image browser's out-of-distribution sort and filter.
        Index("ix_predictions_version_ood", "model_version_id", "ood_score", "image_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    p_fake: Mapped[float]  # calibrated (temperature-scaled)
    p_fake_raw: Mapped[float]
    verdict: Mapped[str] = mapped_column(String(8))
    oos_p_fake: Mapped[float | None]  # out-of-sample (K-fold) probability, labelled images only
    label_issue_score: Mapped[float | None]
    ood_score: Mapped[float | None]
    audit_key: Mapped[float] = mapped_column(default=0.0)  # uniform in [0,1): audit sampling
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewDecision(db.Model):
    """One reviewer's verdict on one image. Append-only: an undo is a new row that reverts one."""

    __tablename__ = "review_decisions"
    __table_args__ = (
        # "Was this decision undone?" is asked for every decision; unique: undone at most once.
        Index("ix_review_decisions_reverts_id", "reverts_id", unique=True),
        Index("ix_review_decisions_image_user", "image_id", "user_id"),
        # A reviewer's counts (today, all time) without reading their rows.
        Index("ix_review_decisions_user_choice_time", "user_id", "choice", "created_at"),
        # A request sent twice (a double click, a retry after a reload) is one decision.
        Index("ux_review_decisions_user_key", "user_id", "idempotency_key", unique=True),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    label_before: Mapped[str] = mapped_column(String(8))
    choice: Mapped[str] = mapped_column(String(8))  # real | fake | unsure | skip | undo
    note: Mapped[str] = mapped_column(Text, default="")
    reverts_id: Mapped[int | None] = mapped_column(ForeignKey("review_decisions.id"))
    # Chosen by the client per decision; NULL for requests without one (NULLs never collide).
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    user: Mapped[User] = relationship()


class Lease(db.Model):
    """A queue item held by one reviewer until it expires, so two never get the same item."""

    __tablename__ = "leases"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class QueueEntry(db.Model):
    """An image's place in the review queue of the active version: bucket and order within it.

    A cache derived from predictions, import labels and the queue settings (rebuilt by
    ``webapp.services.review.queue`` when any of them changes), so that serving the next item
    walks an index instead of scoring every image. ``is_open`` turns false once the image has been
    decided enough times; decisions stay the truth.
    """

    __tablename__ = "queue_entries"
    __table_args__ = (
        Index(
            "ix_queue_entries_order",
            "model_version_id",
            "is_open",
            "bucket_rank",
            "sort_key",
            "image_id",
        ),
    )
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    bucket: Mapped[str] = mapped_column(String(16))
    bucket_rank: Mapped[int]
    sort_key: Mapped[float]  # ascending: the most informative item of a bucket first
    split: Mapped[str] = mapped_column(String(8))
    verdict: Mapped[str] = mapped_column(String(8))
    is_open: Mapped[bool] = mapped_column(default=True)


class QueueBuild(db.Model):
    """What the current queue entries were built from, so a change of any input rebuilds them."""

    __tablename__ = "queue_builds"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE")
    )
    fingerprint: Mapped[str] = mapped_column(String(64))
    n_entries: Mapped[int] = mapped_column(default=0)
    seconds: Mapped[float] = mapped_column(default=0.0)
    built_at: Mapped[datetime] = mapped_column(default=utcnow)


# The in-flight jobs of a kind that runs one at a time (training): at most one row matches.
SINGLETON_IN_FLIGHT = "is_singleton AND state IN ('queued', 'running')"


class Job(db.Model):
    """A background job's state, progress, log and error, mirrored from the task queue."""

    __tablename__ = "jobs"
    __table_args__ = (
        # Makes "one training job at a time" hold for concurrent submits on any database: the
        # second insert fails instead of both passing a check made before either committed.
        Index(
            "ux_jobs_singleton_in_flight",
            "kind",
            unique=True,
            sqlite_where=text(SINGLETON_IN_FLIGHT),
            postgresql_where=text(SINGLETON_IN_FLIGHT),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    # Whether the kind runs one at a time (set by submit from the handler's registration).
    is_singleton: Mapped[bool] = mapped_column(default=False, server_default=false())
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    task_id: Mapped[str] = mapped_column(String(64), default="")
    # "host:pid" of the worker process running it, refreshed heartbeat: a job whose worker died
    # (pid gone on this host, or heartbeat too old) is failed or re-queued, see jobs.recovery.
    worker: Mapped[str] = mapped_column(String(255), default="", server_default="", index=True)
    heartbeat_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    @property
    def is_finished(self) -> bool:
        return self.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.state}>"


class WorkerPresence(db.Model):
    """A running job worker (``host:pid``), refreshed while it runs, removed when it stops:
    how ``--wait`` knows that a queued job has no worker to run it."""

    __tablename__ = "workers"

    identity: Mapped[str] = mapped_column(String(255), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    settings: Mapped[str] = mapped_column(String(255), default="")

    def __repr__(self) -> str:
        return f"<WorkerPresence {self.identity} seen {self.seen_at:%H:%M:%S}>"


class AuditEvent(db.Model):
    """One entry of the audit trail: who did what, when, to what.

    Review decisions live in their own append-only table and are read from there; this table holds
    everything else (activations, imports, deletions, token and account changes) and the decisions
    of deleted datasets, copied here before their rows go. ``username`` is kept as written, so an
    entry still reads right after its account is renamed.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_action", "action", "created_at"),
        Index("ix_audit_events_user", "user_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(80), default="", server_default="")
    action: Mapped[str] = mapped_column(String(40))
    image_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(500), default="", server_default="")
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    def __repr__(self) -> str:
        return f"<AuditEvent {self.id} {self.action} {self.target}>"


class ReviewRequest(db.Model):
    """An admin's request that an image be reviewed (sent from the image browser): it puts the
    image in the queue's ``requested`` bucket whatever its scores say."""

    __tablename__ = "review_requests"
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImageEvidence(db.Model):
    """What an image's own bytes say about where it came from, computed once at import.

    ``findings`` holds one entry per kind of evidence (content credentials, metadata, invisible
    watermark, perceptual hash), each saying what was found and how much it means. The
    perceptual hash is also kept as four 16-bit bands, each indexed, so the near duplicates of
    an image are found among many stored ones by index look-ups, then a Hamming distance.
    ``claims`` is what strong evidence alone says the image is (real, fake or None): the queue
    puts an image whose label or verdict contradicts it in the "evidence disagrees" bucket.
    """

    __tablename__ = "image_evidence"
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    phash: Mapped[int | None] = mapped_column(BigInteger)  # signed 64-bit form of the hash
    phash_band0: Mapped[int | None] = mapped_column(index=True)
    phash_band1: Mapped[int | None] = mapped_column(index=True)
    phash_band2: Mapped[int | None] = mapped_column(index=True)
    phash_band3: Mapped[int | None] = mapped_column(index=True)
    claims: Mapped[str | None] = mapped_column(String(8), index=True)
    findings: Mapped[dict[str, Any]] = mapped_column(JSON)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<ImageEvidence {self.image_id} claims={self.claims}>"


class Check(db.Model):
    """One image someone asked about: stored in the ``checks`` dataset and scored at once.

    ``result`` is filled by the check job (the web process never loads the network); until
    then the check is pending. ``sent_to_review_at``: a person asked for the desk's opinion;
    only then does the image enter the review queue.
    """

    __tablename__ = "checks"
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    file_name: Mapped[str] = mapped_column(String(500), default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text, default="")
    sent_to_review_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    image: Mapped[Image] = relationship()

    def __repr__(self) -> str:
        return f"<Check {self.id} image {self.image_id}>"
