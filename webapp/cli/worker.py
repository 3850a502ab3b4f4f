"""``flask worker``: run the Huey consumer that executes background jobs."""

from __future__ import annotations

import threading

import click
from flask import current_app
from huey.consumer import Consumer

from model.threads import configure_threads, describe

from ..jobs import presence
from ..jobs.core import set_worker_app, worker_identity
from ..jobs.queue import huey
from ..jobs.recovery import recover_abandoned_jobs


@click.command("worker", help="Run the background job worker (Huey consumer).")
@click.option("--workers", default=1, show_default=True, help="Concurrent jobs.")
@click.option("--worker-type", default="thread", type=click.Choice(["thread", "process"]))
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="PyTorch threads per job (default REALFAKE_THREADS, else the cores this process may use).",
)
@click.option(
    "--max-delay",
    default=1.0,
    show_default=True,
    help="Seconds an idle worker waits at most between looks for new jobs (a check waits on it).",
)
def group(workers: int, worker_type: str, threads: int | None, max_delay: float) -> None:
    # First, before any job imports PyTorch: OpenMP reads its wait policy when it loads.
    settings = describe(configure_threads(threads))
    app = current_app._get_current_object()
    set_worker_app(app)
    # Jobs a dead worker left running would otherwise show "running" for ever.
    for recovery in recover_abandoned_jobs():
        click.echo(f"worker: {recovery.describe()}")
    identity = worker_identity()
    presence.register(identity, settings)
    stop = threading.Event()
    presence.keep_fresh(app, identity, stop)
    consumer = Consumer(
        huey, workers=workers, worker_type=worker_type, periodic=False, max_delay=max_delay
    )
    click.echo(
        f"worker {identity}: {workers} {worker_type}(s) on {type(huey.storage).__name__}; "
        f"{settings}"
    )
    try:
        consumer.run()
    finally:
        stop.set()
        presence.unregister(identity)
