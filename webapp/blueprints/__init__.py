"""One blueprint per area; registered by the factory."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Import and register every blueprint."""
    from . import admin, api_admin, auth, datasets, main, reports

    for module in (admin, api_admin, auth, datasets, main, reports):
        app.register_blueprint(module.bp)
