"""``flask data import PATH``, ``flask data stats`` and ``flask data evidence``: bring images in,
audit them, and read the evidence of images stored before it existed."""

from __future__ import annotations

import json
import sys

import click

from .progress import ProgressBar, stop_at_next_step


@click.group("data", help="Import images and audit datasets.")
def group() -> None:
    pass


@group.command("import")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--dataset", help="Dataset name (default: the folder or archive name).")
@click.option("--label", type=click.Choice(["real", "fake"]), help="Force this label.")
@click.option("--evaluation-only", is_flag=True, help="Never train on these images.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, no progress.")
@click.option("--workers", type=int, help="Decoding processes (default: all cores).")
def import_command(path, dataset, label, evaluation_only, as_json, workers) -> None:
    """Import a folder or a .zip/.tar/.tar.gz archive of images.

    Labels come from REAL/ and FAKE/ folders (any depth, any case), splits from train/, val/
    and test/ folders or else from the content hash (80/10/10). The exit status is 0 even when
    some files are rejected, and 1 only when nothing could be read at all. Ctrl-C stops it
    after the files in hand (130); running the same command again completes it.
    """
    from ..services.importing.importer import ImportRefused, SourceError, import_path

    bar = ProgressBar(enabled=not as_json)
    try:
        with stop_at_next_step(bar) as progress:
            report = import_path(
                path,
                dataset=dataset,
                label=label,
                evaluation_only=evaluation_only,
                progress=progress,
                workers=workers,
            )
    except (SourceError, ImportRefused) as error:
        raise click.ClickException(str(error)) from error
    except KeyboardInterrupt:
        bar.close()
        click.echo(
            "Import stopped (Ctrl-C). What was written stays; run the same command again "
            "to import the rest.",
            err=True,
        )
        sys.exit(130)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report.as_json())
    if report.nothing_read:
        sys.exit(1)


def _print_report(report: dict) -> None:
    click.echo(
        f"dataset {report['dataset']!r}: {report['imported']} imported, "
        f"{report['duplicates']} duplicates ({report['linked']} linked from other datasets), "
        f"{len(report['rejected'])} rejected, {report['skipped']} skipped "
        f"in {report['elapsed_s']:.1f} s"
    )
    if report["by_label"]:
        click.echo("  by label: " + _counts(report["by_label"]))
        click.echo("  by split: " + _counts(report["by_split"]))
    for rejection in report["rejected"][:50]:
        click.echo(f"  rejected {rejection['path']}: {rejection['reason']}")
    if len(report["rejected"]) > 50:
        click.echo(f"  ... and {len(report['rejected']) - 50} more (use --json for all)")
    for skipped in report["skipped_files"][:50]:
        click.echo(f"  skipped {skipped['path']}: {skipped['reason']}")
    if len(report["skipped_files"]) > 50:
        click.echo(f"  ... and {len(report['skipped_files']) - 50} more (use --json for all)")
    if report["error"]:
        click.secho(f"failed: {report['error']}", fg="red", err=True)
    for warning in report["warnings"]:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


def _counts(counts: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())


@group.command("stats")
@click.option("--dataset", help="Audit one dataset (default: every image).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats_command(dataset, as_json) -> None:
    """Audit a dataset: size, format, mode, JPEG quality and EXIF per class, area outliers,
    shortcut warnings, and the training split's per-channel mean and standard deviation."""
    from ..services.training import data_audit

    try:
        stats = data_audit.dataset_stats(dataset, with_channel_stats=True)
    except LookupError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    for line in data_audit.describe(stats):
        click.echo(line)


def _attach_demo() -> None:
    """``flask data demo`` lives in its own module; it belongs to this group."""
    from .demo_command import demo

    group.add_command(demo)


_attach_demo()


@group.command("evidence")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def evidence_command(as_json) -> None:
    """Compute the evidence (credentials, metadata, watermark, perceptual hash) of the stored
    images that have none: those imported before evidence existed, or with it turned off."""
    from ..services.evidence.store import backfill

    with ProgressBar("evidence", enabled=not as_json) as bar:
        counts = backfill(bar)
    if as_json:
        click.echo(json.dumps(counts))
        return
    click.echo(
        f"evidence computed for {counts['computed']} image(s); "
        f"{counts['missing_original']} without their original"
    )
