"""One blueprint per area; registered by the factory."""

from importlib import import_module

from flask import Flask

AREAS = (
    "admin",
    "api",
    "api_admin",
    "auth",
    "browser",
    "check",
    "datasets",
    "main",
    "people",
    "reports",
    "review",
)
"""The blueprint modules, each with its ``bp``."""


def register_blueprints(app: Flask) -> None:
    """Import and register every blueprint."""
    for name in AREAS:
        app.register_blueprint(import_module(f"{__name__}.{name}").bp)
    app.register_blueprint(import_module(f"{__name__}.check").api_bp)
