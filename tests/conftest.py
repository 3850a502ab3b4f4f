"""Shared fixtures: an app on a fresh instance folder and database, logged-in clients, a worker.

The database follows ``REALFAKE_TEST_DATABASE``:

- ``sqlite`` (the default): a new SQLite file per test, built by the migrations;
- ``postgresql``: a throwaway PostgreSQL server started for the session (scripts/pgserver.py);
  the migrations build one template database, and each test gets a copy of it
  (``CREATE DATABASE ... TEMPLATE``), dropped afterwards;
- a ``postgresql://`` URL: the same on an existing server, whose role may create databases.

On PostgreSQL only the tests that use the database run (those with the ``app`` fixture): the
others (the model's, pure functions) do not depend on it and already ran in the SQLite pass.
Tests of SQLite-only behaviour carry ``@pytest.mark.sqlite_only(reason=...)`` and are skipped.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading

# Config reads the instance folder (and so the Huey queue's SQLite file) and the Redis URL from
# the environment: point them at a scratch folder and SQLite before anything builds a Config.
_SESSION_INSTANCE = tempfile.mkdtemp(prefix="realfake-tests-")
os.environ["REALFAKE_INSTANCE"] = _SESSION_INSTANCE
os.environ.pop("REALFAKE_REDIS_URL", None)
# Every flask process a test starts scores with the fused fp32 network, as TestConfig does: the
# same numbers on every CPU kind, and no minutes of engine measurement per test instance.
os.environ["REALFAKE_ENGINE_TUNING"] = "off"
# torch.compile compiles in this process: on a 2-core machine inductor otherwise starts a pool of
# compile workers whose result pipe it leaves to a reader thread to close, and when the collector
# finds it first the unclosed-file warning fails whichever test is running (seen in CI).
os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
os.environ.pop("REALFAKE_DATABASE_URL", None)
TEST_DATABASE = os.environ.get("REALFAKE_TEST_DATABASE", "sqlite").strip() or "sqlite"

import pytest  # noqa: E402
from flask_migrate import upgrade  # noqa: E402

from scripts.pgserver import PostgresServer, create_database, drop_database  # noqa: E402
from tests.helpers import login, make_user  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.config import TestConfig, database_url  # noqa: E402
from webapp.extensions import db  # noqa: E402


def pytest_report_header(config):
    return f"database: {TEST_DATABASE.split('://')[0]} (REALFAKE_TEST_DATABASE)"


def pytest_collection_modifyitems(config, items):
    """On PostgreSQL, run only the tests that use a database; skip the SQLite-only ones."""
    if TEST_DATABASE == "sqlite":
        return
    kept = [item for item in items if "app" in getattr(item, "fixturenames", ())]
    deselected = [item for item in items if item not in kept]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
    for item in kept:
        if (marker := item.get_closest_marker("sqlite_only")) is not None:
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {marker.kwargs['reason']}"))


class PostgresDatabases:
    """Fresh migrated databases on one PostgreSQL server: a template migrated once, then copies."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = f"realfake_template_{os.getpid()}"  # test runs may share a server
        self.names = (f"realfake_test_{os.getpid()}_{n}" for n in itertools.count(1))
        self.template_ready = False

    def url(self, name: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    def _migrate_template(self) -> None:
        drop_database(self.admin_url, self.template)
        create_database(self.admin_url, self.template)
        config = TestConfig()
        config.SQLALCHEMY_DATABASE_URI = self.url(self.template)
        template_app = create_app(config)
        with template_app.app_context():
            upgrade()
            db.session.remove()
            db.engine.dispose()  # a template must have no connections when it is copied
        self.template_ready = True

    def create(self) -> str:
        """A new database with the migrated schema; returns its name."""
        if not self.template_ready:
            self._migrate_template()
        name = next(self.names)
        create_database(self.admin_url, name, template=self.template)
        return name

    def drop(self, name: str) -> None:
        drop_database(self.admin_url, name)

    def close(self) -> None:
        if self.template_ready:
            self.drop(self.template)


@pytest.fixture(scope="session")
def postgres_databases():
    """None on SQLite; on PostgreSQL, the session's server (started here when not given)."""
    if TEST_DATABASE == "sqlite":
        yield None
        return
    if TEST_DATABASE == "postgresql":
        with PostgresServer() as server:
            databases = PostgresDatabases(server.url())
            yield databases
            databases.close()
        return
    if not TEST_DATABASE.startswith(("postgresql://", "postgresql+psycopg://")):
        raise pytest.UsageError(
            f"REALFAKE_TEST_DATABASE={TEST_DATABASE!r}: "
            "use sqlite, postgresql or a postgresql:// URL"
        )
    databases = PostgresDatabases(database_url(TEST_DATABASE))
    yield databases
    databases.close()


@pytest.fixture
def database_url_for_test(monkeypatch, postgres_databases):
    """Point REALFAKE_DATABASE_URL (read by Config, inherited by subprocesses) at a fresh database.

    Returns whether the schema still has to be built (SQLite: a new empty file).
    """
    if postgres_databases is None:
        yield True
        return
    name = postgres_databases.create()
    monkeypatch.setenv("REALFAKE_DATABASE_URL", postgres_databases.url(name))
    yield False
    postgres_databases.drop(name)  # WITH (FORCE): whatever a test left connected goes too


@pytest.fixture
def empty_database(monkeypatch, postgres_databases):
    """A function that points REALFAKE_DATABASE_URL at another, empty database (no schema):
    for tests that build a second instance, such as restoring a backup. On SQLite it unsets the
    variable, so the new instance uses the database file in its own folder."""
    made: list[str] = []

    def point_at_empty_database() -> None:
        if postgres_databases is None:
            monkeypatch.delenv("REALFAKE_DATABASE_URL", raising=False)
            return
        name = f"{next(postgres_databases.names)}_empty"
        create_database(postgres_databases.admin_url, name)
        made.append(name)
        monkeypatch.setenv("REALFAKE_DATABASE_URL", postgres_databases.url(name))

    yield point_at_empty_database
    for name in made:
        postgres_databases.drop(name)


@pytest.fixture
def app(tmp_path, monkeypatch, database_url_for_test):
    """An app on its own instance folder and database, schema built by the migrations."""
    monkeypatch.setenv("REALFAKE_INSTANCE", str(tmp_path / "instance"))
    config = TestConfig()
    app = create_app(config)
    if database_url_for_test:
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
    read, emptied first."""
    from pathlib import Path

    from tests.processes import sqlite_queue
    from webapp.jobs.queue import huey

    storage = sqlite_queue(Path(app.instance_path))
    monkeypatch.setattr(huey, "storage", storage)
    storage.flush_queue()
    return storage
