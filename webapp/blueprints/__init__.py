"""One blueprint per area; registered by the factory."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Import and register every blueprint."""
    from . import admin, auth, main

    for module in (admin, auth, main):
        app.register_blueprint(module.bp)
