"""``flask report misclassified|labels``: write reports and label exports to a file."""

from __future__ import annotations

import json

import click

from ..services.reporting import exports, reports
from .progress import ProgressBar


@click.group("report", help="Misclassification reports and label exports.")
def group() -> None:
    pass


def run_writer(label: str, write, *args, **kwargs) -> dict:
    """Run a writer with a progress bar; bad names become a clear error and exit status 1."""
    bar = ProgressBar(label, leave=False)
    try:
        return write(*args, progress=bar, **kwargs)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    finally:
        bar.close()


@group.command("misclassified")
@click.option("--version", "version_name", help="Model version (default: the active one).")
@click.option("--dataset", help="Only images in this dataset.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Only this split.")
@click.option("--format", "fmt", type=click.Choice(reports.FORMATS), required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), required=True)
def misclassified_command(version_name, dataset, split, fmt, output) -> None:
    """Every image whose verdict disagrees with its effective label, and every override."""
    summary = run_writer(
        "report", reports.write_misclassified, output, fmt, version_name, dataset, split
    )
    click.echo(
        f"wrote {summary['rows']} rows ({summary['misclassified']} misclassified, "
        f"{summary['overrides']} overridden) for {summary['version']} to {output}"
    )


@group.command("labels")
@click.option("--dataset", help="Only images in this dataset.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Only this split.")
@click.option("--format", "fmt", type=click.Choice(exports.LABEL_FORMATS), required=True)
@click.option("-o", "--output", type=click.Path(), required=True, help="File (csv) or folder.")
def labels_command(dataset, split, fmt, output) -> None:
    """The effective labels as CSV, or as an ImageFolder tree (REAL/, FAKE/) in a new folder."""
    if fmt == "csv":
        summary = run_writer("labels", exports.write_labels_csv, output, dataset, split)
        click.echo(f"wrote {summary['rows']} labels {json.dumps(summary['labels'])} to {output}")
        return
    summary = run_writer("labels", exports.write_imagefolder, output, dataset, split)
    click.echo(
        f"wrote {summary['real']} REAL and {summary['fake']} FAKE images to {output} "
        f"({summary['linked']} hard-linked, {summary['copied']} copied)"
    )
    if summary["missing"]:
        click.echo(
            f"warning: {summary['missing']} originals are missing and were left out "
            f"(image ids {summary['missing_examples']}...)",
            err=True,
        )
