"""The Huey instance, pointed by the app factory at the storage the app's Config names.

The instance exists at import time because Huey registers tasks with decorators; until an app
configures it, it holds tasks in memory. :func:`configure` (called by ``create_app``) gives it
Redis when ``REDIS_URL`` is set, else the SQLite file ``HUEY_SQLITE_PATH`` (in the instance
folder by default), and runs tasks at once, in the caller, with ``HUEY_IMMEDIATE``. The
environment variables behind those settings (``REALFAKE_REDIS_URL``, ``REALFAKE_INSTANCE``) are
read by :class:`webapp.config.Config`, so the web app and ``flask worker`` find the same queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huey import Huey
from huey.storage import MemoryStorage, RedisStorage, SqliteStorage

QUEUE_NAME = "realfake"
SQLITE_TIMEOUT = 30  # seconds a writer waits for the SQLite queue's lock

huey = Huey(QUEUE_NAME, storage_class=MemoryStorage)


def storage_settings(config: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """The storage class and its arguments that ``config`` names."""
    if config.get("REDIS_URL"):
        return RedisStorage, {"url": config["REDIS_URL"]}
    path = Path(config["HUEY_SQLITE_PATH"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStorage, {"filename": str(path), "timeout": SQLITE_TIMEOUT}


def configure(config: Mapping[str, Any]) -> None:
    """Point the queue at the storage ``config`` names (unchanged when it already is, so an app
    built again inside a worker process leaves the consumer's storage alone)."""
    storage_class, kwargs = storage_settings(config)
    immediate = bool(config.get("HUEY_IMMEDIATE", False))
    if (huey.storage_class, huey.storage_kwargs, huey.immediate) == (
        storage_class,
        kwargs,
        immediate,
    ):
        return
    huey.storage_class, huey.storage_kwargs = storage_class, kwargs
    huey.immediate = immediate
    huey.storage = huey.create_storage()
