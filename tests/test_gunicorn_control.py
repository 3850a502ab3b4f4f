"""Two desks on one machine keep their own gunicorn control sockets: each in its instance folder
(gunicorn.conf.py), so stopping one leaves the other's in place."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.common import gunicorn


def control_socket(instance: Path) -> Path:
    """Where gunicorn.conf.py puts the control socket of ``instance``."""
    from importlib import util

    spec = util.spec_from_file_location(
        "gunicorn_conf", Path(__file__).parent.parent / "gunicorn.conf.py"
    )
    module = util.module_from_spec(spec)
    old = os.environ.get("REALFAKE_INSTANCE")
    os.environ["REALFAKE_INSTANCE"] = str(instance)
    try:
        spec.loader.exec_module(module)
    finally:
        if old is not None:
            os.environ["REALFAKE_INSTANCE"] = old
    return Path(module.control_socket)


def wait_until_exists(path: Path, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.1)
    return path.exists()


def desk_env(instance: Path) -> dict[str, str]:
    instance.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "REALFAKE_DATABASE_URL"}
    return env | {"REALFAKE_INSTANCE": str(instance), "REALFAKE_SECRET_KEY": "test"}


def test_two_desks_keep_their_own_control_sockets(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first_socket, second_socket = control_socket(first), control_socket(second)
    assert first_socket != second_socket
    assert first_socket.parent == first  # short enough: inside the instance folder
    with gunicorn(desk_env(second), workers=1):
        with gunicorn(desk_env(first), workers=1):
            assert wait_until_exists(first_socket) and wait_until_exists(second_socket)
        assert not first_socket.exists()  # the first desk stopped and took only its own
        assert second_socket.exists()


def test_a_long_instance_path_gets_a_short_socket_of_its_own(tmp_path):
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    path = control_socket(deep)
    assert len(str(path)) <= 100 and path != control_socket(tmp_path / "other")
