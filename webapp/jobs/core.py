"""Submitting, running, cancelling and waiting for jobs."""

from __future__ import annotations

import importlib
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Job, JobState, utcnow
from .queue import huey

Handler = Callable[["JobContext"], dict[str, Any] | None]
_HANDLERS: dict[str, Handler] = {}


@dataclass(frozen=True)
class JobKind:
    """A kind of job: the module whose ``@handler`` runs it, imported when the first job of the
    kind runs (so the web server and the CLI start without PyTorch), and how the queue treats it.

    ``singleton``: only one may be queued or running at a time (training). ``resumable``: a
    second run completes one that was cut short (imports, scoring), so a job whose worker died
    is queued again instead of failed.
    """

    module: str
    singleton: bool = False
    resumable: bool = False


_KINDS: dict[str, JobKind] = {}
_worker_app: Flask | None = None


class JobCancelled(Exception):
    """Raised inside a handler when an admin asked to cancel its job."""


class JobFailed(Exception):
    """Raised inside a handler for a failure it can explain: the message, a plain sentence for
    the person who started the job, is recorded as the job's error instead of a traceback."""


class TooManyJobs(Exception):
    """A user already has ``MAX_QUEUED_JOBS`` jobs of a kind waiting or running."""


def declare(kind: str, module: str, singleton: bool = False, resumable: bool = False) -> None:
    """Make ``kind`` known (see ``registry``); its handler is imported on first use."""
    _KINDS[kind] = JobKind(module, singleton, resumable)


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of ``kind`` (declared in ``registry``)."""

    def register(function: Handler) -> Handler:
        if kind not in _KINDS:
            raise ValueError(f"job kind {kind!r} is not declared in webapp.jobs.registry")
        _HANDLERS[kind] = function
        return function

    return register


def handler_for(kind: str) -> Handler:
    """The function that runs ``kind``, importing its module the first time."""
    if kind not in _HANDLERS:
        if kind not in _KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        importlib.import_module(_KINDS[kind].module)
        if kind not in _HANDLERS:
            raise RuntimeError(f"{_KINDS[kind].module} registers no handler for {kind!r}")
    return _HANDLERS[kind]


def is_resumable(kind: str) -> bool:
    """Whether jobs of ``kind`` complete when simply run again."""
    return kind in _KINDS and _KINDS[kind].resumable


def worker_identity() -> str:
    """``host:pid`` of this process, recorded on the jobs it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def set_worker_app(app: Flask | None) -> None:
    """Use ``app`` for jobs run in this process (tests run a real consumer in-process)."""
    global _worker_app
    _worker_app = app


def _app() -> Flask:
    global _worker_app
    if _worker_app is None:
        from .. import create_app

        _worker_app = create_app()
    return _worker_app


def submit(kind: str, params: dict[str, Any] | None = None, user_id: int | None = None) -> Job:
    """Create a Job row (committing the session) and enqueue it.

    For singleton kinds, return the job already queued or running instead. Two submits racing
    (two admins, two web workers) cannot both insert: the database's partial unique index over
    in-flight singleton jobs refuses the second row, and its caller gets the first job.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    singleton = _KINDS[kind].singleton
    if user_id is not None and not singleton:
        same = _users_job_in_flight(kind, params or {}, user_id)
        if same is not None:
            return same
    for _attempt in range(3):
        if singleton and (running := _in_flight(kind)) is not None:
            return running
        job = Job(kind=kind, params=params or {}, user_id=user_id, progress={})
        job.is_singleton = singleton
        db.session.add(job)
        try:
            db.session.commit()
        except IntegrityError:
            if not singleton:
                raise
            db.session.rollback()  # another submit won; the loop returns its job
            continue
        result = run_job(job.id)
        job.task_id = result.id if hasattr(result, "id") else ""
        db.session.commit()
        return job
    raise RuntimeError(f"could not submit a {kind} job: in-flight jobs kept changing")


def _users_job_in_flight(kind: str, params: dict[str, Any], user_id: int) -> Job | None:
    """The user's queued or running job of ``kind`` with these very ``params`` (asking twice
    returns it); TooManyJobs when the user has the most jobs of the kind allowed in flight."""
    mine = db.session.scalars(
        select(Job)
        .where(Job.kind == kind, Job.user_id == user_id)
        .where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
        .order_by(Job.id)
    ).all()
    for job in mine:
        if job.params == params:
            return job
    limit = _current_config().get("MAX_QUEUED_JOBS", 3)
    if len(mine) >= limit:
        raise TooManyJobs(
            f"you have {len(mine)} {kind} jobs waiting or running (at most {limit}): "
            "wait for one to finish or cancel it"
        )
    return None


def _in_flight(kind: str) -> Job | None:
    """The oldest queued or running job of ``kind``."""
    return db.session.scalar(
        select(Job)
        .where(Job.kind == kind, Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
        .order_by(Job.id)
    )


def cancel(job: Job) -> Job:
    """Ask a job to stop. A queued job is cancelled at once; a running one at its next check."""
    if job.is_finished:
        return job
    job.cancel_requested = True
    if job.state == JobState.QUEUED:
        job.state = JobState.CANCELLED
        job.finished_at = utcnow()
    db.session.commit()
    return job


def wait_for(job_id: int, timeout: float | None = None, poll: float = 0.5, on_progress=None) -> Job:
    """Block until the job finishes (used by ``--wait`` and tests); returns the fresh row."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        db.session.expire_all()
        job = db.session.get(Job, job_id)
        if on_progress is not None:
            on_progress(job)
        if job.is_finished:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.state} after {timeout}s")
        time.sleep(poll)


@dataclass
class JobContext:
    """What a handler gets: its parameters and ways to report progress and notice cancellation."""

    job_id: int
    kind: str
    params: dict[str, Any]
    _last_check: float = field(default=0.0)

    def progress(self, **fields: Any) -> None:
        """Merge ``fields`` (epoch, batch, images_per_s, eta_s, fraction, ...) into the Job row.

        Written on its own connection so it is visible at once and never mixes with the
        handler's own transaction.
        """
        with db.engine.begin() as connection:
            current = connection.execute(
                select(Job.progress).where(Job.id == self.job_id)
            ).scalar_one()
            merged = {**(current or {}), **fields}
            connection.execute(
                update(Job)
                .where(Job.id == self.job_id)
                .values(progress=merged, heartbeat_at=utcnow())
            )

    def log(self, message: str) -> None:
        """Append a timestamped line to the job's log."""
        line = f"{utcnow():%Y-%m-%d %H:%M:%S} {message}\n"
        with db.engine.begin() as connection:
            connection.execute(update(Job).where(Job.id == self.job_id).values(log=Job.log + line))

    def cancel_requested(self, every_seconds: float = 1.0) -> bool:
        """Whether cancellation was asked for (the database is read at most every second)."""
        now = time.monotonic()
        if now - self._last_check < every_seconds:
            return False
        self._last_check = now
        with db.engine.connect() as connection:
            return bool(
                connection.execute(
                    select(Job.cancel_requested).where(Job.id == self.job_id)
                ).scalar_one()
            )

    def check_cancelled(self, every_seconds: float = 1.0) -> None:
        """Raise JobCancelled if cancellation was asked for."""
        if self.cancel_requested(every_seconds):
            raise JobCancelled()


def _current_config() -> dict:
    from flask import current_app

    return current_app.config


def _finish(job_id: int, state: JobState, result=None, error: str = "") -> None:
    db.session.rollback()
    values: dict[str, Any] = {"state": state, "finished_at": utcnow(), "error": error}
    if result is not None:
        values["result"] = result
    # Only while this worker still holds the job: if it was declared dead meanwhile (a stale
    # heartbeat) and failed or re-queued, that decision stands.
    mine = (Job.id == job_id, Job.state == JobState.RUNNING, Job.worker == worker_identity())
    with db.engine.begin() as connection:
        connection.execute(update(Job).where(*mine).values(**values))


def _claim(job_id: int) -> bool:
    """Move a queued job to running under this worker's name, atomically: when a task is
    delivered twice (two workers, a re-queue racing a late delivery) only one run starts."""
    now = utcnow()
    with db.engine.begin() as connection:
        claimed = connection.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.QUEUED, Job.cancel_requested.is_(False))
            .values(
                state=JobState.RUNNING,
                started_at=now,
                heartbeat_at=now,
                worker=worker_identity(),
                attempts=Job.attempts + 1,
            )
        )
    return claimed.rowcount == 1


class Heartbeat:
    """Refresh a running job's ``heartbeat_at`` every ``interval`` seconds from a side thread,
    so a long step that reports no progress does not make a live worker look dead."""

    def __init__(self, engine, job_id: int, interval: float) -> None:
        self.engine, self.job_id, self.interval = engine, job_id, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopped.set()
        self.thread.join()

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        update(Job)
                        .where(Job.id == self.job_id, Job.state == JobState.RUNNING)
                        .values(heartbeat_at=utcnow())
                    )
            except Exception:  # a busy database: the next beat tries again
                continue


def execute(job_id: int) -> None:
    """Run one job to completion inside an app context, recording how it ended."""
    if not _claim(job_id):
        return
    job = db.session.get(Job, job_id)
    context = JobContext(job_id=job.id, kind=job.kind, params=dict(job.params or {}))
    interval = float(_current_config().get("HEARTBEAT_SECONDS", 30))
    try:
        with Heartbeat(db.engine, job_id, interval):
            result = handler_for(job.kind)(context)
    except JobCancelled:
        context.log("cancelled")
        _finish(job_id, JobState.CANCELLED)
    except JobFailed as error:
        context.log(f"failed: {error}")
        _finish(job_id, JobState.FAILED, error=str(error))
    except Exception as error:  # the job's row must say why it failed, whatever the error
        context.log(f"failed: {error!r}")
        _finish(job_id, JobState.FAILED, error=traceback.format_exc(limit=20))
    else:
        _finish(job_id, JobState.SUCCEEDED, result=result or {})
    finally:
        db.session.remove()


@huey.task(context=False)
def run_job(job_id: int) -> None:
    """The one Huey task: look up the job's handler and run it."""
    with _app().app_context():
        execute(job_id)
