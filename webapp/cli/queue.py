"""``flask queue show|counts|rebuild|escalations``: the review queue for scripts and admins.

``show --json`` prints exactly what ``GET /api/v1/queue`` returns under ``items``, in the same
order.
"""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from ..services.review import buckets, item_details, materialise, queue
from ..services.review.buckets import QueueError, QueueFilter

# AppGroup: every command runs inside an application context, however it is invoked.
group = AppGroup("queue", help="Inspect the review queue.")


def _filter_options(command):
    for option in reversed(
        [
            click.option("--bucket", help="Only this bucket (label_issue, misclassified, ...)."),
            click.option("--dataset", help="Only images of this dataset."),
            click.option("--split", type=click.Choice(["train", "val", "test"])),
            click.option("--verdict", type=click.Choice(["real", "fake"])),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]
    ):
        command = option(command)
    return command


@group.command("show")
@_filter_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0, None))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0, None))
def show(bucket, dataset, split, verdict, as_json, limit, offset) -> None:
    """The open queue, most informative first."""
    filters = QueueFilter(dataset=dataset, split=split, bucket=bucket, verdict=verdict)
    try:
        items = queue.list_items(filters, limit=limit, offset=offset)
    except QueueError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps({"items": [item.to_dict() for item in items]}, indent=2))
        return
    if not items:
        click.echo(
            "The queue is empty for these filters."
            if filters != QueueFilter()
            else "The queue is empty."
        )
        return
    click.echo(f"{'image':>8}  {'bucket':<13} {'label':<7} {'verdict':<7} {'p_fake':>6}  file")
    for item in items:
        click.echo(
            f"{item.image_id:>8}  {item.bucket:<13} {item.label:<7} {item.verdict:<7} "
            f"{item.p_fake:>6.3f}  {item.dataset}/{item.file_name}"
        )


@group.command("counts")
@_filter_options
def counts(bucket, dataset, split, verdict, as_json) -> None:
    """Open items per bucket."""
    filters = QueueFilter(dataset=dataset, split=split, bucket=bucket, verdict=verdict)
    try:
        per_bucket = queue.counts(filters)
    except QueueError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps({"counts": per_bucket, "total": sum(per_bucket.values())}))
        return
    for name, number in per_bucket.items():
        click.echo(f"{buckets.BUCKET_TITLES[name]:<26} {number:>8}")
    click.echo(f"{'Total':<26} {sum(per_bucket.values()):>8}")


@group.command("rebuild")
def rebuild() -> None:
    """Rebuild the queue from the active version's predictions now (it also happens by itself)."""
    build = materialise.rebuild()
    if build is None:
        click.echo("No active model version: the queue is empty.")
        return
    click.echo(f"{build.n_entries} queue entries in {build.seconds:.2f} s")


@group.command("escalations")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def escalations(as_json: bool) -> None:
    """Items whose reviewers disagree, waiting for an admin."""
    items = item_details.escalations()
    if as_json:
        click.echo(json.dumps({"items": items}, indent=2))
        return
    if not items:
        click.echo("No escalations.")
    for item in items:
        votes = ", ".join(f"{vote['user']}: {vote['choice']}" for vote in item["votes"])
        click.echo(f"{item['image_id']:>8}  {item['dataset']}/{item['file_name']}  ({votes})")
