"""Background jobs: a Job row per unit of long work, run by a Huey worker.

Views and CLI commands call :func:`submit`; the worker runs the registered handler with a
:class:`JobContext` that records progress, log lines and cancellation in the Job row.
"""

from . import registry  # noqa: F401  (declares every job kind)
from .core import (
    JobCancelled,
    JobContext,
    JobFailed,
    TooManyJobs,
    cancel,
    handler,
    submit,
    wait_for,
)

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "TooManyJobs",
    "cancel",
    "handler",
    "submit",
    "wait_for",
]
