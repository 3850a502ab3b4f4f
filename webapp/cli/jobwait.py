"""Waiting for a job from the command line, with a progress bar."""

from __future__ import annotations

import sys

import click
from tqdm import tqdm

from ..jobs import wait_for
from ..models import Job, JobState


def describe(job: Job) -> str:
    """One line about a job's progress, for the bar's postfix."""
    progress = job.progress or {}
    parts = [job.state]
    for key in ("stage", "epoch", "images_per_s", "eta_s", "loss", "val_acc"):
        if key in progress and progress[key] is not None:
            value = progress[key]
            parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def wait_with_bar(job_id: int, label: str) -> Job:
    """Show a bar until the job ends; raise ClickException (exit 1) unless it succeeded."""
    bar = tqdm(total=1000, desc=label, file=sys.stderr, unit="‰", leave=True)

    def update(job: Job) -> None:
        fraction = float((job.progress or {}).get("fraction") or 0.0)
        bar.n = int(1000 * min(max(fraction, 0.0), 1.0))
        bar.set_postfix_str(describe(job), refresh=True)

    try:
        job = wait_for(job_id, poll=0.5, on_progress=update)
    finally:
        bar.close()
    if job.state != JobState.SUCCEEDED:
        detail = job.error.strip().splitlines()[-1] if job.error.strip() else job.state
        raise click.ClickException(f"job {job.id} ({job.kind}) {job.state}: {detail}")
    return job
