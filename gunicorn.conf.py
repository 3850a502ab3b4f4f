"""gunicorn settings for this project, read by every ``gunicorn`` started in the checkout
(gunicorn loads ``./gunicorn.conf.py`` by itself; ``scripts/demo.sh`` names it too).

The control socket (``gunicornc``) belongs to the desk's instance folder. gunicorn's default is
one fixed path in the home folder, so two desks on one machine took it from each other and
stopping one deleted the other's. A path too long for a Unix socket (about 100 bytes) is
replaced by a short one in the temporary folder, named after the instance folder.
"""

import hashlib
import tempfile
from pathlib import Path

from webapp.config import instance_path_from_env

MAX_SOCKET_PATH = 100  # sockaddr_un holds 108 bytes on Linux, 104 on macOS


def instance_control_socket() -> str:
    """The control socket path of the instance named by ``REALFAKE_INSTANCE``."""
    instance = instance_path_from_env()
    path = instance / "gunicorn.ctl"
    if len(str(path).encode()) <= MAX_SOCKET_PATH:
        return str(path)
    digest = hashlib.sha256(str(instance).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"realfake-{digest}.ctl")


control_socket = instance_control_socket()
