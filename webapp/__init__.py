"""RealFake Review: the Flask application factory."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import inputs
from .config import Config
from .extensions import csrf, db, login_manager, migrate

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")


def create_app(config: Config | None = None) -> Flask:
    """Build the app from ``config`` (default: :class:`Config`, read from the environment)."""
    config = config or Config()
    project_root = Path(__file__).resolve().parent.parent
    app = Flask(
        __name__,
        instance_path=config.INSTANCE_PATH,
        template_folder=str(project_root / "templates"),
        static_folder=str(project_root / "static"),
    )
    app.config.from_object(config)
    inputs.init_app(app)  # bounded <int:...> ids and guarded JSON, before any route is added
    os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR)
    login_manager.init_app(app)
    csrf.init_app(app)
    with app.app_context():
        _configure_sqlite(db.engine)

    from . import auth, errors, security
    from .blueprints import register_blueprints
    from .cli import register_commands
    from .jobs import queue as job_queue
    from .jobs import registry  # noqa: F401  (declares the job kinds)

    job_queue.configure(app.config)  # Redis or the SQLite file Config names
    errors.init_app(app)
    security.init_app(app)
    auth.init_app(app)  # session and bearer-token users, JSON 401s, CSRF for cookie sessions
    inputs.init_uploads(app)  # NULs in multipart bodies, once the user is known
    register_blueprints(app)
    register_commands(app)

    @app.context_processor
    def navigation():
        return {"view_endpoints": set(app.view_functions)}

    return app


def _configure_sqlite(engine: Engine) -> None:
    """WAL and a busy timeout, so the web workers and the job worker can share one SQLite file."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
