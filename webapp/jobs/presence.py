"""Which job workers are running: each worker keeps a row in ``workers`` fresh while it runs.

A queued job with no worker waits for ever without a word; with these rows ``--wait`` can say
within seconds that nothing will run it and how to start a worker. A worker on this host counts
as running while its process exists; one on another host while its row is younger than the
heartbeat timeout (it refreshes the row every ``HEARTBEAT_SECONDS``).
"""

from __future__ import annotations

import threading
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import delete, select

from ..extensions import db
from ..models import WorkerPresence, utcnow
from ..processes import process_alive
from .recovery import split_worker

START_HINT = "flask --app wsgi worker"


def register(identity: str, settings: str = "") -> None:
    """Record this worker as running (replacing a stale row of the same identity)."""
    db.session.merge(
        WorkerPresence(identity=identity, started_at=utcnow(), seen_at=utcnow(), settings=settings)
    )
    db.session.commit()


def unregister(identity: str) -> None:
    """Remove this worker's row (it is stopping)."""
    db.session.execute(delete(WorkerPresence).where(WorkerPresence.identity == identity))
    db.session.commit()


def keep_fresh(app: Flask, identity: str, stop: threading.Event) -> threading.Thread:
    """A daemon thread refreshing ``seen_at`` every heartbeat interval until ``stop`` is set."""

    def refresh() -> None:
        interval = float(app.config["HEARTBEAT_SECONDS"])
        while not stop.wait(interval):
            with app.app_context():
                row = db.session.get(WorkerPresence, identity)
                if row is None:
                    db.session.add(WorkerPresence(identity=identity))
                else:
                    row.seen_at = utcnow()
                db.session.commit()
                db.session.remove()

    thread = threading.Thread(target=refresh, name="worker-presence", daemon=True)
    thread.start()
    return thread


def running_workers() -> list[WorkerPresence]:
    """Workers that are running now, by the rules in the module docstring."""
    timeout = timedelta(seconds=float(current_app.config["HEARTBEAT_TIMEOUT"]))
    now = utcnow()
    alive = []
    for row in db.session.scalars(select(WorkerPresence).order_by(WorkerPresence.started_at)):
        host, pid = split_worker(row.identity)
        if pid is not None and host == _hostname():
            if process_alive(pid):
                alive.append(row)
        elif now - row.seen_at <= timeout:
            alive.append(row)
    return alive


def _hostname() -> str:
    import socket

    return socket.gethostname()


def no_worker_message(job_id: int) -> str:
    """What ``--wait`` says when a job is queued and no worker runs."""
    return (
        f"job {job_id} is queued but no job worker is running, so it will not start: run "
        f"`{START_HINT}` in another terminal (from the repository root, with .venv active); "
        "still waiting"
    )
