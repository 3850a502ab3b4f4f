"""One blueprint per area; registered by the factory."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Import and register every blueprint."""
    from . import auth, datasets, main

    app.register_blueprint(auth.bp)
    app.register_blueprint(datasets.bp)
    app.register_blueprint(main.bp)
