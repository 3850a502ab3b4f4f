"""``flask worker``: run the Huey consumer that executes background jobs."""

from __future__ import annotations

import click
from flask import current_app
from huey.consumer import Consumer

from ..jobs.core import set_worker_app, worker_identity
from ..jobs.queue import huey
from ..jobs.recovery import recover_abandoned_jobs


@click.command("worker", help="Run the background job worker (Huey consumer).")
@click.option("--workers", default=1, show_default=True, help="Concurrent jobs.")
@click.option("--worker-type", default="thread", type=click.Choice(["thread", "process"]))
@click.option(
    "--max-delay",
    default=1.0,
    show_default=True,
    help="Seconds an idle worker waits at most between looks for new jobs (a check waits on it).",
)
def group(workers: int, worker_type: str, max_delay: float) -> None:
    set_worker_app(current_app._get_current_object())
    # Jobs a dead worker left running would otherwise show "running" for ever.
    for recovery in recover_abandoned_jobs():
        click.echo(f"worker: {recovery.describe()}")
    consumer = Consumer(
        huey, workers=workers, worker_type=worker_type, periodic=False, max_delay=max_delay
    )
    click.echo(
        f"worker {worker_identity()}: {workers} {worker_type}(s) on {type(huey.storage).__name__}"
    )
    consumer.run()
