"""Shared fixtures: an app on a fresh instance folder, logged-in clients, a real worker."""

from __future__ import annotations

import os
import tempfile
import threading

# The Huey queue is created at import time from the environment, so point it at a scratch
# instance folder before anything imports the app.
_SESSION_INSTANCE = tempfile.mkdtemp(prefix="realfake-tests-")
os.environ["REALFAKE_INSTANCE"] = _SESSION_INSTANCE
os.environ.pop("REALFAKE_REDIS_URL", None)
os.environ.pop("REALFAKE_DATABASE_URL", None)

import pytest  # noqa: E402
from flask_migrate import upgrade  # noqa: E402

from tests.helpers import login, make_user  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.config import TestConfig  # noqa: E402
from webapp.extensions import db  # noqa: E402


@pytest.fixture
def app(tmp_path, monkeypatch):
    """An app on its own instance folder and database, schema built by the migrations."""
    monkeypatch.setenv("REALFAKE_INSTANCE", str(tmp_path / "instance"))
    config = TestConfig()
    app = create_app(config)
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def runner(app):
    """Invoke the app's CLI commands."""
    return app.test_cli_runner()


@pytest.fixture
def app_ctx(app):
    """Run the test inside an application context."""
    with app.app_context():
        yield app


class AuthActions:
    """Log in as a role through the real login form (CSRF token included)."""

    def __init__(self, app, client):
        self.app = app
        self.client = client

    def login(self, role: str = "reviewer", username: str | None = None):
        username = username or f"{role}1"
        with self.app.app_context():
            make_user(username, role=role)
        return login(self.client, username)

    def logout(self):
        from tests.helpers import csrf_token

        token = csrf_token(self.client, "/auth/login")
        return self.client.post("/auth/logout", data={"csrf_token": token})


@pytest.fixture
def auth(app, client):
    return AuthActions(app, client)


@pytest.fixture
def worker(app):
    """A real Huey consumer running in this process, executing jobs against ``app``."""
    from huey.consumer import Consumer

    from webapp.jobs.core import set_worker_app
    from webapp.jobs.queue import huey

    huey.flush()
    set_worker_app(app)
    consumer = Consumer(
        huey, workers=1, worker_type="thread", periodic=False, check_worker_health=False
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    consumer._set_signal_handlers = lambda: None  # signals belong to the main thread only
    thread.start()
    yield consumer
    consumer.stop(graceful=True)
    thread.join(timeout=30)
    set_worker_app(None)


@pytest.fixture
def worker_processes(tmp_path):
    """Start real ``flask worker`` processes (``start(env)``); all are stopped afterwards."""
    from tests.processes import WorkerProcess

    started: list[WorkerProcess] = []

    def start(env: dict[str, str]) -> WorkerProcess:
        process = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def shared_queue(app, monkeypatch):
    """Jobs submitted here go to the SQLite queue that worker processes on ``app``'s instance
    read (this process's queue was made at import time for another folder)."""
    from pathlib import Path

    from tests.processes import sqlite_queue
    from webapp.jobs.queue import huey

    storage = sqlite_queue(Path(app.instance_path))
    monkeypatch.setattr(huey, "storage", storage)
    storage.flush_queue()
    return storage
