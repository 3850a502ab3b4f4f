"""The Huey instance: SQLite storage in the instance folder by default, Redis when configured.

It is created at import time because Huey registers tasks with decorators; the storage it uses is
chosen from the same environment variables the app's Config reads.
"""

from __future__ import annotations

import os

from huey import RedisHuey, SqliteHuey

from ..config import instance_path_from_env


def make_huey():
    """Build the queue from ``REALFAKE_REDIS_URL`` (Redis) or the instance folder (SQLite)."""
    redis_url = os.environ.get("REALFAKE_REDIS_URL")
    if redis_url:
        return RedisHuey("realfake", url=redis_url)
    instance = instance_path_from_env()
    instance.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("realfake", filename=str(instance / "huey.db"), timeout=30)


huey = make_huey()
