"""``flask backup create|restore``: online backups of the database, the image store and models."""

from __future__ import annotations

import json

import click

from ..services.operations.backup import BackupError, create_backup, restore_backup


@click.group("backup", help="Back up the instance while it runs, or restore a backup.")
def group() -> None:
    pass


@group.command("create", help="Write a consistent backup into the new folder PATH.")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def create(path: str, as_json: bool) -> None:
    try:
        summary = create_backup(path)
    except BackupError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(summary.as_json(), indent=2))
        return
    rows = sum(summary.tables.values())
    click.echo(
        f"backup {summary.path}: {rows} rows in {len(summary.tables)} tables, "
        f"{summary.files} files, schema {summary.revision}"
    )
    for relative in summary.missing:
        click.echo(f"warning: {relative} was missing from the instance and is not in the backup")


@group.command("restore", help="Restore the backup in PATH into this (fresh) instance.")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--force", is_flag=True, help="Replace the data of a non-empty instance.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def restore(path: str, force: bool, as_json: bool) -> None:
    try:
        result = restore_backup(path, force=force)
    except BackupError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    rows = sum(result["tables"].values())
    click.echo(f"restored {rows} rows and {result['files']} files (schema {result['revision']})")
