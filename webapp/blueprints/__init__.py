"""One blueprint per area; registered by the factory."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Import and register every blueprint."""
    from . import api, auth, main, review

    app.register_blueprint(auth.bp)
    app.register_blueprint(main.bp)
    app.register_blueprint(review.bp)
    app.register_blueprint(api.bp)
