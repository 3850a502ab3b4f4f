"""The one progress bar every command shows: tqdm on stderr, so stdout stays the result.

Writers and jobs report progress as ``(done, total)`` calls, a job's bar also changes unit and
total between stages; :class:`ProgressBar` takes both, and is silent when ``enabled`` is false
(``--json`` output, where only the result may be printed).

:func:`stop_at_next_step` makes Ctrl-C stop such work between its steps rather than inside one.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


class ProgressBar:
    """A tqdm bar on stderr fed by ``bar(done, total)``; closed by :meth:`close` or ``with``."""

    def __init__(
        self, label: str | None = None, unit: str = "img", enabled: bool = True, leave: bool = True
    ) -> None:
        self.bar = tqdm(
            desc=label,
            unit=unit,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=leave,
            disable=not enabled,
        )
        self.unit = self.own_unit = unit

    def __call__(self, done: int, total: int | None, unit: str | None = None) -> None:
        """Show ``done`` of ``total`` in ``unit`` (default: the bar's own); a new unit or total
        starts the count afresh."""
        unit = unit or self.own_unit
        if (unit, total) != (self.unit, self.bar.total):
            self.bar.reset(total=total)
            self.bar.unit, self.unit = unit, unit
        self.bar.n = done
        self.bar.refresh()

    def describe(self, text: str) -> None:
        """Words after the numbers (a job's stage, say)."""
        self.bar.set_postfix_str(text, refresh=True)

    def write(self, message: str) -> None:
        """A line above the bar, without breaking it."""
        tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        """Finish the bar (it stays on screen when ``leave``)."""
        self.bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class StagedProgress:
    """One bar per stage, for callers that report ``(stage, done, total)``."""

    def __init__(self, prefix: str, enabled: bool = True) -> None:
        self.prefix, self.enabled = prefix, enabled
        self.stage: str | None = None
        self.bar: ProgressBar | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Show ``done`` of ``total`` in the bar of ``stage`` (a new stage closes the last)."""
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = ProgressBar(f"{self.prefix}: {stage}", unit="", enabled=self.enabled)
        self.bar(done, total)

    def close(self) -> None:
        """Finish the current stage's bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def stop_at_next_step(progress: Callable[..., None]) -> Iterator[Callable[..., None]]:
    """Yield ``progress`` wrapped so that the first Ctrl-C stops the work at its next call.

    A Ctrl-C raised wherever the main thread happens to be can land inside a database call or a
    process pool's bookkeeping; raised from the progress call, it lands between two steps, where
    what the work wrote is committed. The wrapper raises KeyboardInterrupt there; a second Ctrl-C
    before that raises it at once. Outside the main thread (no signals there) it changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield progress
        return
    requested = threading.Event()

    def on_ctrl_c(signum, frame) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()  # no printing here: the main thread may be half-way through a write

    def checked(*args, **kwargs) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        progress(*args, **kwargs)

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield checked
    finally:
        signal.signal(signal.SIGINT, previous)
