"""One blueprint per area; registered by the factory."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Import and register every blueprint."""
    from . import (
        admin,
        api,
        api_admin,
        auth,
        browser,
        check,
        datasets,
        main,
        people,
        reports,
        review,
    )

    for module in (
        admin,
        api,
        api_admin,
        auth,
        browser,
        check,
        datasets,
        main,
        people,
        reports,
        review,
    ):
        app.register_blueprint(module.bp)
    app.register_blueprint(check.api_bp)
