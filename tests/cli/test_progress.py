"""The commands' progress helpers: Ctrl-C that waits for the work's next step."""

from __future__ import annotations

import signal
import threading

import pytest

from webapp.cli.progress import stop_at_next_step


def test_first_ctrl_c_stops_at_the_next_step_and_a_second_at_once():
    calls = []
    before = signal.getsignal(signal.SIGINT)
    with stop_at_next_step(lambda done, total: calls.append(done)) as progress:
        progress(1, 3)
        signal.raise_signal(signal.SIGINT)  # the handler only takes note
        assert calls == [1]
        with pytest.raises(KeyboardInterrupt):
            progress(2, 3)
        assert calls == [1]
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_progress_is_passed_through():
    seen = []

    def work():
        def show(done, total):
            seen.append((done, total))

        with stop_at_next_step(show) as progress:
            seen.append(progress is show)
            progress(1, 1)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [True, (1, 1)]
