"""Small job kinds used to check the job machinery end to end (a sleep, a deliberate failure)."""

from __future__ import annotations

import time

from ...jobs import handler


@handler("sleep")
def sleep_job(context) -> dict:
    """Sleep in small steps, reporting progress and honouring cancellation."""
    steps = int(context.params.get("steps", 5))
    for step in range(steps):
        context.check_cancelled(every_seconds=0)
        time.sleep(float(context.params.get("seconds", 0.1)))
        context.progress(step=step + 1, total=steps, fraction=(step + 1) / steps)
    return {"slept_steps": steps}


@handler("fail")
def fail_job(context) -> dict:
    """Fail on purpose with the given message."""
    context.log("about to fail")
    raise RuntimeError(context.params.get("message", "deliberate failure"))
