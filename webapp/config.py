"""Configuration read from environment variables, with safe defaults.

Everything the app writes lives under one instance folder (``REALFAKE_INSTANCE``, default
``instance/`` in the checkout), so several desks and test runs can sit side by side.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def instance_path_from_env() -> Path:
    """The instance folder named by ``REALFAKE_INSTANCE``, made absolute."""
    return Path(os.environ.get("REALFAKE_INSTANCE", PROJECT_ROOT / "instance")).resolve()


def _secret_key(instance: Path) -> str:
    """A stable secret key: from the environment, else generated once into the instance folder."""
    if os.environ.get("REALFAKE_SECRET_KEY"):
        return os.environ["REALFAKE_SECRET_KEY"]
    key_file = instance / "secret_key"
    if not key_file.exists():
        instance.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def database_url(url: str) -> str:
    """The SQLAlchemy URL for ``url``: plain ``postgresql://`` (and Heroku-style ``postgres://``)
    URLs use the psycopg 3 driver, the one this project installs, instead of SQLAlchemy's
    default psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _float_env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _optional_int_env(name: str) -> int | None:
    """The integer in ``name``, or None when the variable is unset or empty (no choice made)."""
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


class Config:
    """Production defaults; every value can be overridden by an environment variable."""

    def __init__(self) -> None:
        instance = instance_path_from_env()
        self.INSTANCE_PATH = str(instance)
        self.SECRET_KEY = _secret_key(instance)
        self.SQLALCHEMY_DATABASE_URI = database_url(
            os.environ.get("REALFAKE_DATABASE_URL") or f"sqlite:///{instance / 'realfake.db'}"
        )
        self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
        self.MAX_CONTENT_LENGTH = _int_env("REALFAKE_MAX_UPLOAD_BYTES", 2 * 1024**3)
        # Cookies: never readable by scripts, not sent on cross-site requests, and only over
        # HTTPS when the desk is served that way (REALFAKE_SECURE_COOKIES=1; also turns on HSTS).
        secure = os.environ.get("REALFAKE_SECURE_COOKIES", "0") == "1"
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = secure
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_SAMESITE = "Lax"
        self.REMEMBER_COOKIE_SECURE = secure
        self.WTF_CSRF_TIME_LIMIT = None
        # Login throttling (webapp/services/people/login_throttle.py), counted in the database.
        self.LOGIN_FREE_FAILURES = _int_env("REALFAKE_LOGIN_FREE_FAILURES", 5)
        self.LOGIN_MAX_BACKOFF = _int_env("REALFAKE_LOGIN_MAX_BACKOFF", 900)
        self.LOGIN_ADDRESS_NAMES = _int_env("REALFAKE_LOGIN_ADDRESS_NAMES", 10)
        self.LOGIN_WINDOW = _int_env("REALFAKE_LOGIN_WINDOW", 900)
        # Task queue (webapp/jobs/queue.py): Huey over SQLite in the instance folder, or Redis
        # when a URL is given; HUEY_IMMEDIATE runs each job at once, in the process that submits it.
        self.REDIS_URL = os.environ.get("REALFAKE_REDIS_URL", "")
        self.HUEY_SQLITE_PATH = str(instance / "huey.db")
        self.HUEY_IMMEDIATE = False
        # Workers: a running job's heartbeat is refreshed this often; a job whose worker cannot
        # be checked directly (another host) counts as abandoned once its heartbeat is this old.
        self.HEARTBEAT_SECONDS = _float_env("REALFAKE_HEARTBEAT_SECONDS", 30.0)
        self.HEARTBEAT_TIMEOUT = _float_env("REALFAKE_HEARTBEAT_TIMEOUT", 300.0)
        # Jobs one user may have waiting or running per kind (the web and the API; not the CLI).
        self.MAX_QUEUED_JOBS = _int_env("REALFAKE_MAX_QUEUED_JOBS", 3)
        # Resumable jobs (imports) whose worker died are re-queued at most this many times.
        self.MAX_JOB_ATTEMPTS = _int_env("REALFAKE_MAX_JOB_ATTEMPTS", 3)
        # Images and the pre-resized pixel cache built at import time.
        self.IMPORT_WORKERS = _int_env("REALFAKE_IMPORT_WORKERS", os.cpu_count() or 1)
        self.CACHE_SIZE = _int_env("REALFAKE_CACHE_SIZE", 224)
        self.THUMBNAIL_SIZE = _int_env("REALFAKE_THUMBNAIL_SIZE", 256)
        self.MAX_IMAGE_PIXELS = _int_env("REALFAKE_MAX_IMAGE_PIXELS", 89_478_485)
        self.MAX_IMAGE_SIDE = _int_env("REALFAKE_MAX_IMAGE_SIDE", 30_000)
        self.MAX_ARCHIVE_BYTES = _int_env("REALFAKE_MAX_ARCHIVE_BYTES", 20 * 1024**3)
        self.MAX_ARCHIVE_RATIO = _float_env("REALFAKE_MAX_ARCHIVE_RATIO", 200.0)
        # Model.
        self.MODEL_DEVICE = os.environ.get("REALFAKE_DEVICE", "auto")
        self.IMAGENET_WEIGHTS = os.environ.get("REALFAKE_IMAGENET_WEIGHTS", "")
        self.IMAGENET_WEIGHTS_SHA256 = os.environ.get("REALFAKE_IMAGENET_WEIGHTS_SHA256", "")
        # Size and epochs set in the environment override the preset's; None: the preset's own.
        self.DEFAULT_IMAGE_SIZE = _optional_int_env("REALFAKE_IMAGE_SIZE")
        self.DEFAULT_EPOCHS = _optional_int_env("REALFAKE_EPOCHS")
        # A model.config.TrainConfig preset: "seed" (224 px as the study), "demo", "cifake".
        self.TRAIN_PRESET = os.environ.get("REALFAKE_TRAIN_PRESET", "seed")
        self.KFOLD = _int_env("REALFAKE_KFOLD", 5)
        # Each version's FAKE threshold allows this share of real validation images to be called
        # fake (its operating point).
        self.TARGET_FPR = _float_env("REALFAKE_TARGET_FPR", 0.01)
        # Images per forward pass when scoring: memory grows with it (and with the image size).
        self.SCORE_BATCH = _int_env("REALFAKE_SCORE_BATCH", 256)
        # Inference engine and training precision: measured on first use and kept in the
        # instance folder (auto: torch.compile included; quick: without it; off: fused fp32).
        self.ENGINE_TUNING = os.environ.get("REALFAKE_ENGINE_TUNING", "auto")
        self.AUTO_ACTIVATE_BETTER = os.environ.get("REALFAKE_AUTO_ACTIVATE", "0") == "1"
        # Review queue.
        self.QUEUE_BUCKETS = os.environ.get(
            "REALFAKE_QUEUE_BUCKETS",
            "requested,label_issue,evidence,misclassified,uncertain,ood,audit",
        ).split(",")
        self.UNCERTAIN_LOW = _float_env("REALFAKE_UNCERTAIN_LOW", 0.35)
        self.UNCERTAIN_HIGH = _float_env("REALFAKE_UNCERTAIN_HIGH", 0.65)
        self.LABEL_ISSUE_THRESHOLD = _float_env("REALFAKE_LABEL_ISSUE_THRESHOLD", 0.8)
        self.OOD_THRESHOLD = _float_env("REALFAKE_OOD_THRESHOLD", 0.95)
        self.AUDIT_RATE = _float_env("REALFAKE_AUDIT_RATE", 0.02)
        self.LEASE_SECONDS = _int_env("REALFAKE_LEASE_SECONDS", 300)
        self.REVIEWS_PER_ITEM = _int_env("REALFAKE_REVIEWS_PER_ITEM", 1)
        # The desk accepts a decision only once its image has been on screen this long.
        self.DESK_MIN_DISPLAY_MS = _int_env("REALFAKE_DESK_MIN_DISPLAY_MS", 150)
        # Checks of one image: evidence read at import, near duplicates, how long a request waits.
        self.EVIDENCE_AT_IMPORT = os.environ.get("REALFAKE_EVIDENCE_AT_IMPORT", "1") != "0"
        self.NEAR_DUPLICATE_DISTANCE = _int_env("REALFAKE_NEAR_DUPLICATE_DISTANCE", 6)
        self.CHECK_WAIT_SECONDS = _float_env("REALFAKE_CHECK_WAIT_SECONDS", 10.0)


class TestConfig(Config):
    """Settings for the test suite: small sizes; CSRF stays on, so tests send tokens."""

    TESTING = True

    def __init__(self) -> None:
        super().__init__()
        self.IMPORT_WORKERS = 2
        self.CACHE_SIZE = 32
        self.CHECK_WAIT_SECONDS = 2.0  # tests that run a worker wait longer themselves
        self.DEFAULT_IMAGE_SIZE = 32
        self.KFOLD = 3
        # fp32 everywhere unless a test measures: the same numbers on every CPU kind.
        self.ENGINE_TUNING = "off"
