"""Waiting for a job from the command line, with a progress bar that counts what the job counts.

The bar counts images (scoring, imports: ``done`` of ``total``) or optimizer steps (training:
epochs times batches), so its rate reads as images/s or steps/s. A job still queued after
``NO_WORKER_AFTER`` seconds with no job worker running gets one plain line saying so and how to
start one, instead of a bar that never moves.
"""

from __future__ import annotations

import time

import click

from ..jobs import presence, wait_for
from ..models import Job, JobState
from .progress import ProgressBar

NO_WORKER_AFTER = 2.0  # seconds a job may sit queued before the worker check


def describe(job: Job) -> str:
    """One line about a job's progress, for the bar's postfix."""
    progress = job.progress or {}
    parts = [job.state]
    for key in ("stage", "epoch", "images_per_s", "eta_s", "loss", "val_acc"):
        if key in progress and progress[key] is not None:
            value = progress[key]
            parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def counted(progress: dict) -> tuple[int, int, str | None] | None:
    """(done, total, unit) from a job's progress: steps for training, otherwise the bar's own
    unit (None: images, or what the caller of :func:`wait_with_bar` counts); None while the job
    reports nothing countable."""
    try:
        batches, epochs = int(progress["batches"]), int(progress["epochs"])
        done = (int(progress["epoch"]) - 1) * batches + int(progress["batch"])
        return min(done, batches * epochs), batches * epochs, "step"
    except (KeyError, TypeError, ValueError):
        pass
    try:
        return int(progress["done"]), int(progress["total"]), None
    except (KeyError, TypeError, ValueError):
        return None


def wait_with_bar(job_id: int, label: str, unit: str = "img") -> Job:
    """Show a bar (counting ``unit``) until the job ends; raise ClickException (exit 1) unless
    it succeeded."""
    bar = ProgressBar(label, unit=unit)
    started, warned = time.monotonic(), False

    def update(job: Job) -> None:
        nonlocal warned
        count = counted(job.progress or {})
        if count is not None:
            bar(*count)
        bar.describe(describe(job))
        queued_for = time.monotonic() - started
        if job.state == JobState.QUEUED and not warned and queued_for >= NO_WORKER_AFTER:
            warned = True  # checked once: a worker started later picks the job up silently
            if not presence.running_workers():
                bar.write(presence.no_worker_message(job.id))

    try:
        job = wait_for(job_id, poll=0.5, on_progress=update)
    finally:
        bar.close()
    if job.state != JobState.SUCCEEDED:
        detail = job.error.strip().splitlines()[-1] if job.error.strip() else job.state
        raise click.ClickException(f"job {job.id} ({job.kind}) {job.state}: {detail}")
    return job
