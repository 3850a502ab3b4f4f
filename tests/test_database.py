"""The database layer on SQLite and PostgreSQL: URLs, migrations both ways, concurrent submits."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from webapp import config, create_app
from webapp.extensions import db
from webapp.jobs import submit
from webapp.models import Job, JobState, User


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@127.0.0.1:5432/desk", "postgresql+psycopg://u:p@127.0.0.1:5432/desk"),
        ("postgres://u:p@db/desk", "postgresql+psycopg://u:p@db/desk"),
        ("postgresql+psycopg://u@db/desk", "postgresql+psycopg://u@db/desk"),
        ("sqlite:////srv/desk.db", "sqlite:////srv/desk.db"),
    ],
)
def test_plain_postgresql_urls_use_the_installed_psycopg_driver(given, used, monkeypatch):
    assert config.database_url(given) == used
    monkeypatch.setenv("REALFAKE_DATABASE_URL", given)
    settings = config.TestConfig()
    uri = settings.SQLALCHEMY_DATABASE_URI
    assert uri == used


def test_app_runs_on_a_plain_postgresql_url(app, monkeypatch):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if not url.startswith("postgresql"):
        pytest.skip("needs the PostgreSQL pass (REALFAKE_TEST_DATABASE=postgresql)")
    monkeypatch.setenv(
        "REALFAKE_DATABASE_URL", url.replace("postgresql+psycopg://", "postgresql://")
    )
    plain = create_app(config.TestConfig())
    try:
        with plain.app_context():
            assert db.engine.dialect.driver == "psycopg"
            db.session.add(User(username="plain", password_hash="x"))
            db.session.commit()
    finally:
        with plain.app_context():
            db.session.remove()
            db.engine.dispose()
    with app.app_context():
        assert db.session.scalar(select(func.count(User.id))) == 1


def schema_differences() -> list:
    """What the database's schema lacks or has beyond the models (Alembic's autogenerate)."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_migrations_build_the_schema_the_models_declare(app_ctx):
    assert schema_differences() == []


def test_migrations_downgrade_to_nothing_and_upgrade_again(app, runner):
    down = runner.invoke(args=["db", "downgrade", "base"])
    assert down.exit_code == 0, down.output
    with app.app_context():
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    up = runner.invoke(args=["db", "upgrade"])
    assert up.exit_code == 0, up.output
    with app.app_context():
        assert schema_differences() == []


def test_concurrent_training_submits_make_exactly_one_job(app):
    """Several admins press Train at the same moment: one job, and every one of them sees it."""
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    job_ids: list[int] = []
    errors: list[BaseException] = []

    def press_train() -> None:
        with app.app_context():
            try:
                barrier.wait()
                job_ids.append(submit("train", {"epochs": 1}).id)
            except BaseException as error:  # reported by the assertion below
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=press_train) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with app.app_context():
        rows = db.session.scalars(select(Job).where(Job.kind == "train")).all()
    assert len(rows) == 1
    assert job_ids == [rows[0].id] * threads_count
    assert rows[0].state == JobState.QUEUED and rows[0].is_singleton


def test_a_finished_training_job_does_not_block_the_next(app_ctx):
    first = submit("train", {"epochs": 1})
    first.state = JobState.FAILED
    db.session.commit()
    second = submit("train", {"epochs": 1})
    assert second.id != first.id
    assert submit("train", {"epochs": 1}).id == second.id


def test_other_kinds_are_not_limited(app_ctx):
    first = submit("sleep", {"steps": 1})
    second = submit("sleep", {"steps": 1})
    assert first.id != second.id and not first.is_singleton
