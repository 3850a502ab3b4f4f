"""A throwaway PostgreSQL server for tests and benchmarks: initdb in a temp folder, loopback only.

``PostgresServer`` creates a cluster with Debian's (or any) PostgreSQL binaries, starts it on
127.0.0.1 on a free port, waits until it accepts connections, and on ``stop()`` shuts it down and
deletes every file it made. PostgreSQL refuses to run as root, so under root the cluster belongs
to an unprivileged user (``postgres`` when it exists, else ``nobody``) and the server runs as it.

    from scripts.pgserver import PostgresServer

    with PostgresServer() as server:
        server.create_database("realfake")
        url = server.url("realfake")  # postgresql+psycopg://realfake:...@127.0.0.1:PORT/realfake

From a shell (``scripts/setup_postgres.sh`` installs the binaries when they are missing)::

    python scripts/pgserver.py run -- flask --app wsgi db upgrade   # REALFAKE_DATABASE_URL set
    python scripts/pgserver.py serve                                # prints the URL, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROLE = "realfake"
# Settings that make a cluster nobody will ever recover fast; kept off with durable=True.
NOT_DURABLE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_PR_SET_PDEATHSIG = 1


class PostgresError(RuntimeError):
    """The server could not be found, created or started; the message says why."""


def find_bin_dir() -> Path:
    """The folder of ``initdb`` and ``postgres``: ``REALFAKE_PG_BIN``, Debian's newest, or PATH."""
    named = os.environ.get("REALFAKE_PG_BIN")
    candidates = [Path(named)] if named else []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: -int(p.name))]
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise PostgresError(
        "PostgreSQL binaries not found (initdb, postgres); run scripts/setup_postgres.sh "
        "or set REALFAKE_PG_BIN to their folder"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Who owns and runs the cluster: ourselves, unless we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresError("running as root and neither a 'postgres' nor a 'nobody' user exists")


def _die_with_parent() -> None:
    """Linux: the server gets SIGINT (fast shutdown) if whoever started it dies without stopping
    it, so a killed test run leaves no server behind. Elsewhere only stop() stops it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


class PostgresServer:
    """One throwaway cluster; see the module docstring. Use as a context manager or call
    ``start()`` and ``stop()``."""

    def __init__(
        self,
        port: int | None = None,
        durable: bool = False,
        settings: dict[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.bin_dir = Path(bin_dir) if bin_dir else find_bin_dir()
        self.port = port
        self.settings = {**({} if durable else NOT_DURABLE), **(settings or {})}
        self.password = secrets.token_urlsafe(18)
        self.user = _unprivileged_user()
        self.base: Path | None = None
        self.process: subprocess.Popen | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """Create the cluster and start the server; return once it accepts connections."""
        self.base = Path(tempfile.mkdtemp(prefix="realfake-pg-"))
        try:
            self._initdb()
            self._launch()
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the server down (fast: clients are disconnected) and delete its files."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()  # SIGKILL: nothing of this cluster is worth keeping
                self.process.wait()
        self.process = None
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """The SQLAlchemy URL of ``database`` on this server (``driver`` "postgresql" for libpq)."""
        return f"{driver}://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        """An autocommit psycopg connection, for creating and dropping databases."""
        import psycopg

        return psycopg.connect(self.url(database, driver="postgresql"), autocommit=True)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create ``name`` (a copy of ``template`` when given); returns its SQLAlchemy URL."""
        create_database(self.url(), name, template)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever is still connected to it."""
        drop_database(self.url(), name)

    # ------------------------------------------------------------------ internals

    def _run_as_owner(self, command: list[str], **options) -> subprocess.CompletedProcess:
        return subprocess.run(
            command, cwd=self.base, capture_output=True, text=True, **self._owner(), **options
        )

    def _owner(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        if self.user is not None:
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        password_file = self.base / "password"
        password_file.write_text(self.password + "\n")
        if self.user is not None:
            os.chown(password_file, self.user.pw_uid, self.user.pw_gid)
        command = [
            str(self.bin_dir / "initdb"),
            f"--pgdata={self.base / 'data'}",
            f"--username={ROLE}",
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",  # a throwaway cluster: nothing to flush to disk
        ]
        done = self._run_as_owner(command, env=dict(os.environ, LC_ALL="C.UTF-8"))
        password_file.unlink()
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode}): {done.stderr.strip()}")

    def _launch(self) -> None:
        self.port = self.port or free_port()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.base),
            "max_connections": "200",
            **self.settings,
        }
        command = [str(self.bin_dir / "postgres"), "-D", str(self.base / "data")]
        for key, value in options.items():
            command += ["-c", f"{key}={value}"]
        log = open(self.base / "server.log", "ab")  # noqa: SIM115  (the server keeps writing)
        with log:
            self.process = subprocess.Popen(
                command,
                cwd=self.base,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C at the terminal reaches us, we stop it in order
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                **self._owner(),
            )

    def _wait_until_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise PostgresError(f"postgres exited with {self.process.returncode}: {self.log()}")
            try:
                with psycopg.connect(self.url(driver="postgresql"), connect_timeout=5):
                    return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise PostgresError(f"postgres not ready after {timeout}s: {error}") from None
            time.sleep(0.05)

    def log(self, tail: int = 2000) -> str:
        """The end of the server's log, for error messages."""
        if self.base is None or not (self.base / "server.log").exists():
            return ""
        return (self.base / "server.log").read_text(errors="replace")[-tail:].strip()


_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _identifier(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return f'"{name}"'


def _admin_connection(admin_url: str):
    import psycopg

    return psycopg.connect(
        admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    )


def create_database(admin_url: str, name: str, template: str | None = None) -> None:
    """``CREATE DATABASE name [TEMPLATE template]`` on the server that ``admin_url`` reaches."""
    sql = f"CREATE DATABASE {_identifier(name)}"
    if template:
        sql += f" TEMPLATE {_identifier(template)}"
    with _admin_connection(admin_url) as connection:
        connection.execute(sql)


def drop_database(admin_url: str, name: str) -> None:
    """``DROP DATABASE IF EXISTS name WITH (FORCE)`` (PostgreSQL 13+ disconnects its clients)."""
    with _admin_connection(admin_url) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")


# ---------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``run -- COMMAND...`` with REALFAKE_DATABASE_URL set, or ``serve`` until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--database", default="realfake", help="database to create")
    parser.add_argument("--durable", action="store_true", help="keep fsync and full-page writes")
    commands = parser.add_subparsers(dest="action", required=True)
    run = commands.add_parser("run", help="run a command against a fresh server, then stop it")
    run.add_argument("command", nargs=argparse.REMAINDER)
    commands.add_parser("serve", help="print the URL and serve until Ctrl-C or SIGTERM")
    args = parser.parse_args(argv)
    command = list(getattr(args, "command", []))
    if command[:1] == ["--"]:
        command = command[1:]
    if args.action == "run" and not command:
        parser.error("run needs a command, e.g. run -- flask --app wsgi db upgrade")
    try:
        server = PostgresServer(port=args.port, durable=args.durable).start()
    except PostgresError as error:
        print(f"pgserver: {error}", file=sys.stderr)
        return 2
    try:
        url = server.create_database(args.database)
        if args.action == "run":
            return subprocess.call(command, env=dict(os.environ, REALFAKE_DATABASE_URL=url))
        print(url, flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
