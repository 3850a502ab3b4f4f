"""``flask --app wsgi data demo``: build the bundled demo dataset and import it.

The folder is built under the instance folder (``demo-src/``) and reused while its manifest
matches the options, so running the command again regenerates nothing and, because the importer
deduplicates by content hash, imports nothing twice.
"""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from .progress import StagedProgress

DEMO_FOLDER = "demo-src"


def demo_folder() -> Path:
    """Where the demo images are generated: inside the current app's instance folder."""
    return Path(current_app.instance_path) / DEMO_FOLDER


def _describe(summary: dict) -> str:
    """The build half of the one-line summary."""
    counts = summary["counts"]["by_folder"]
    how = "reused" if summary["reused"] else f"built in {summary['build_seconds']:.0f} s"
    return (
        f"{counts['real']} real/ + {counts['fake']} fake/ images in {summary['folder']} "
        f"({how}, seed {summary['seed']}, {len(summary['mislabelled'])} deliberately mislabelled)"
    )


@click.command("demo")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for every random choice."
)
@click.option(
    "--n-real",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Real photographs to make (a few of them are put in fake/ on purpose).",
)
@click.option(
    "--n-fake",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Generated images to make (a few of them are put in real/ on purpose).",
)
@click.option("--dataset", default="demo", show_default=True, help="Dataset to import into.")
@click.option("--force", is_flag=True, help="Regenerate the images even if they match.")
@click.option(
    "--generator-steps",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Training steps of the fake-image generator (fewer: faster, cruder fakes).",
)
@click.option("--build-only", is_flag=True, help="Build the folder but do not import it.")
@with_appcontext
def demo(
    seed: int,
    n_real: int,
    n_fake: int,
    dataset: str,
    force: bool,
    generator_steps: int,
    build_only: bool,
) -> None:
    """Build the demo dataset (real photographs, generated fakes) and import it."""
    from webapp.services.operations.demo_data import ensure_demo_folder

    progress = StagedProgress("demo")
    try:
        summary = ensure_demo_folder(
            demo_folder(),
            force=force,
            seed=seed,
            n_real=n_real,
            n_fake=n_fake,
            generator_steps=generator_steps,
            on_progress=progress,
        )
    except (FileExistsError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    finally:
        progress.close()
    if build_only:
        click.echo(f"demo: {_describe(summary)}")
        return
    from webapp.services.importing.importer import import_path

    report = import_path(Path(summary["folder"]), dataset=dataset).as_json()
    click.echo(
        f"demo: {_describe(summary)}; dataset {dataset!r}: imported {report['imported']}, "
        f"duplicates {report['duplicates']}, rejected {len(report['rejected'])}"
    )
