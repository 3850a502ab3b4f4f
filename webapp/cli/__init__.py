"""Command-line groups: ``flask --app wsgi data|model|queue|users|report|worker|...``."""

from flask import Flask


def register_commands(app: Flask) -> None:
    """Attach every command group to ``app.cli``."""
    from . import backup, check, data, doctor, model, queue, report, users, worker

    for module in (backup, check, data, doctor, model, queue, report, users, worker):
        app.cli.add_command(module.group)
