"""Progress of a training run as the Job row sees it: throttled reports with the share done.

Shared by the in-process and the torchrun training paths, so both report alike.
"""

from __future__ import annotations

import time
from typing import Any


class Throttle:
    """Forward at most one progress report per interval to the Job row."""

    def __init__(self, send, interval: float = 1.0) -> None:
        self.send, self.interval, self.last = send, interval, 0.0

    def __call__(self, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval or fields.get("final"):
            self.last = now
            self.send(**{k: v for k, v in fields.items() if k != "final"}, **fraction_of(fields))


def fraction_of(fields: dict[str, Any]) -> dict[str, float]:
    """The share of the run done, from epoch/epochs and batch/batches when reported."""
    try:
        done_epochs = fields["epoch"] - 1 + fields["batch"] / fields["batches"]
        return {"fraction": round(min(max(done_epochs / fields["epochs"], 0.0), 1.0), 4)}
    except (KeyError, TypeError, ZeroDivisionError):
        return {}
