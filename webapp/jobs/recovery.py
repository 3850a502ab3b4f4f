"""Jobs left ``running`` by a worker that died (kill -9, a crash, a lost machine).

A job records the worker that runs it (``host:pid``) and a heartbeat. Its worker is dead when it
ran on this host and that process is gone, or, for another host, when its heartbeat is older than
``HEARTBEAT_TIMEOUT``. Such a job is queued again when its kind is resumable (an import completes
when run again) and it has attempts left, and failed with "worker died" otherwise: a training cut
short never registered its version (the row is written after the checkpoint, last), so the active
version is untouched.

Every change is a compare-and-set on (id, state, worker), so two workers starting at once, or a
worker and ``flask doctor``, never both act on the same job.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from ..extensions import db
from ..models import Job, JobState, utcnow
from ..processes import process_alive
from .core import is_resumable, run_job

REQUEUED = "requeued"
FAILED = "failed"


@dataclass
class Recovery:
    """What was done to one abandoned job."""

    job_id: int
    kind: str
    worker: str
    reason: str
    action: str  # "requeued" | "failed" | "" (found only)

    def describe(self) -> str:
        """One line for the worker's start-up output and for doctor."""
        done = {REQUEUED: "queued again", FAILED: "marked failed", "": "found"}[self.action]
        worker = self.worker or "an unknown worker"
        return f"job {self.job_id} ({self.kind}) on {worker}: {self.reason}; {done}"


def split_worker(worker: str) -> tuple[str, int | None]:
    """(host, pid) from ``host:pid``; pid None when it cannot be read."""
    host, _, pid = worker.rpartition(":")
    return (host, int(pid)) if pid.isdigit() else (worker, None)


def death_reason(job: Job, now: datetime, timeout_s: float) -> str | None:
    """Why the worker of a running job is dead, or None when it may be alive."""
    host, pid = split_worker(job.worker or "")
    if job.worker and host == socket.gethostname() and pid is not None:
        return None if process_alive(pid) else f"worker process {pid} is gone"
    last_sign = job.heartbeat_at or job.started_at or job.created_at
    if last_sign is not None and now - last_sign > timedelta(seconds=timeout_s):
        return f"no heartbeat for {int((now - last_sign).total_seconds())} s"
    return None


def abandoned_jobs(timeout_s: float | None = None) -> list[tuple[Job, str]]:
    """Running jobs whose worker is dead, with the reason."""
    timeout_s = timeout_s if timeout_s is not None else current_app.config["HEARTBEAT_TIMEOUT"]
    now = utcnow()
    found = []
    for job in db.session.scalars(select(Job).where(Job.state == JobState.RUNNING)):
        reason = death_reason(job, now, timeout_s)
        if reason is not None:
            found.append((job, reason))
    return found


def recover_abandoned_jobs(timeout_s: float | None = None) -> list[Recovery]:
    """Re-queue or fail every running job whose worker is dead; returns what was done."""
    max_attempts = int(current_app.config["MAX_JOB_ATTEMPTS"])
    done = []
    for job, reason in abandoned_jobs(timeout_s):
        retry = is_resumable(job.kind) and job.attempts < max_attempts
        action = _requeue(job, reason) if retry else _fail(job, reason)
        if action:
            done.append(Recovery(job.id, job.kind, job.worker, reason, action))
    db.session.expire_all()
    return done


def _still_held(job: Job):
    return (Job.id == job.id, Job.state == JobState.RUNNING, Job.worker == job.worker)


def _log_line(message: str) -> str:
    return f"{utcnow():%Y-%m-%d %H:%M:%S} {message}\n"


def _requeue(job: Job, reason: str) -> str:
    line = _log_line(f"worker {job.worker} died ({reason}); queued again to resume")
    with db.engine.begin() as connection:
        changed = connection.execute(
            update(Job)
            .where(*_still_held(job))
            .values(
                state=JobState.QUEUED,
                worker="",
                started_at=None,
                heartbeat_at=None,
                log=Job.log + line,
            )
        ).rowcount
    if changed != 1:
        return ""
    result = run_job(job.id)
    with db.engine.begin() as connection:
        task_id = getattr(result, "id", "") or ""
        connection.execute(update(Job).where(Job.id == job.id).values(task_id=task_id))
    return REQUEUED


def _fail(job: Job, reason: str) -> str:
    message = f"worker died: {job.worker or 'unknown worker'} ({reason})"
    if is_resumable(job.kind):
        message += f"; gave up after {job.attempts} attempts"
    with db.engine.begin() as connection:
        changed = connection.execute(
            update(Job)
            .where(*_still_held(job))
            .values(
                state=JobState.FAILED,
                finished_at=utcnow(),
                error=message,
                log=Job.log + _log_line(message),
            )
        ).rowcount
    return FAILED if changed == 1 else ""
