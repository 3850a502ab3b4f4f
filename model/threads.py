"""CPU threads for a process that runs the network on a machine it may share.

Two things make PyTorch slow on a shared CPU: more threads than the cores this process may use
(a container or ``taskset`` limits them, ``os.cpu_count`` does not see that), and OpenMP threads
that spin while they wait for work, taking the cores other processes need: a training job beside
two busy processes fell to a fraction of its speed. ``configure_threads`` sizes the thread pool
to ``os.sched_getaffinity`` and asks OpenMP to sleep while it waits (``OMP_WAIT_POLICY=PASSIVE``).

OpenMP reads its wait policy once, when PyTorch is first imported, so a process calls this before
anything imports torch (the job worker does it first thing); called later, the thread count still
applies and the report says that the wait policy did not.
"""

from __future__ import annotations

import os
import sys

THREADS_ENV = "REALFAKE_THREADS"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def configure_threads(threads: int | None = None) -> dict:
    """Size PyTorch's and OpenMP's threads to the usable cores (``REALFAKE_THREADS`` or
    ``threads`` overrides) and make OpenMP threads sleep while waiting; returns what was set."""
    requested = threads or int(os.environ.get(THREADS_ENV) or 0) or usable_cores()
    torch_loaded = "torch" in sys.modules
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OMP_NUM_THREADS", str(requested))
    if torch_loaded:
        import torch

        torch.set_num_threads(requested)
    return {
        "threads": requested,
        "usable_cores": usable_cores(),
        "machine_cores": os.cpu_count() or 1,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "wait_policy_applies": not torch_loaded,
    }


def describe(settings: dict) -> str:
    """One line for a start-up message or ``flask doctor``."""
    line = (
        f"{settings['threads']} threads ({settings['usable_cores']} of "
        f"{settings['machine_cores']} cores usable), OpenMP wait policy "
        f"{settings['omp_wait_policy']}"
    )
    if not settings["wait_policy_applies"]:
        line += " (set after PyTorch loaded: not in force)"
    return line
