"""PostgreSQL fixtures, loaded by ``tests/conftest.py`` as a pytest plugin when psycopg and
psycopg_pool are installed.

They serve the ``postgres`` row of the backend table (``support.backends``): a private
PostgreSQL cluster, ``initdb``-ed into a temporary directory and started once per session on a
free loopback port (trust authentication, no fsync, every statement logged with the
``application_name`` of its connection, so tests can count a backend's statements), stopped and
removed at the session's end. ``backend_factory_postgres`` returns
``make(**options) -> PostgresBackend`` with a fresh table per call.

The server binaries are looked up on ``PATH`` and in ``/usr/lib/postgresql/<major>/bin`` (where
Debian keeps them: ``initdb`` is not on ``PATH`` there). ``initdb`` and ``postgres`` refuse to
run as root, which the tests do in containers and CI: the cluster then belongs to the
``postgres`` system user (or ``nobody`` when there is none) and every server command runs as
that user (``runuser``, else ``setuid`` in the child). Without the binaries the row skips with
the reason, or fails when ``TASKSTORE_REQUIRE_SERVERS=1`` (CI).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest

from support.servers import free_port, unavailable
from taskstore.backends.postgres import PostgresBackend

__all__ = [
    "PostgresServer",
    "StoreUrl",
    "count_statements",
    "find_bin_dir",
    "fresh_table",
    "start_postgres_server",
]

PostgresFactory = Callable[..., PostgresBackend]

#: The database superuser of every private cluster (trust authentication, no password).
SUPERUSER = "postgres"


def fresh_table() -> str:
    """A table name no other test uses (valid for ``?table=``)."""
    return f"ts_{uuid.uuid4().hex[:12]}"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name) or ["0"])


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: on ``PATH`` (symlinks
    resolved), else the newest ``/usr/lib/postgresql/<major>/bin``; ``None`` if none."""
    found = shutil.which("initdb")
    if found is not None:
        directory = Path(os.path.realpath(found)).parent
        if (directory / "pg_ctl").exists() and (directory / "postgres").exists():
            return directory
    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=_version_key,
        reverse=True,
    )
    return candidates[0] if candidates else None


def _server_user() -> pwd.struct_passwd | None:
    """The system user the cluster runs as when the tests run as root (else ``None``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists")


class PostgresServer:
    """A private PostgreSQL cluster on a loopback port; stoppable and restartable on the same
    port (for fault tests).

    :ivar port: the TCP port (127.0.0.1).
    :ivar log_path: the server's log (``log_line_prefix`` holds ``%a``, the application name).
    """

    def __init__(self, bin_dir: Path, directory: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self.port = port
        self.data = directory / "data"
        self.log_path = directory / "server.log"
        self._user = _server_user()

    @property
    def url(self) -> str:
        """The superuser's URL of the cluster's ``postgres`` database."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url_for(self, user: str = SUPERUSER, password: str | None = None) -> str:
        """The URL of the ``postgres`` database as ``user`` (with ``password``, if given)."""
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a server binary as the cluster's owner."""
        command = [str(self.bin_dir / args[0]), *args[1:]]
        preexec: Callable[[], None] | None = None
        user = self._user
        if user is not None:
            runuser = shutil.which("runuser")
            if runuser is not None:
                command = [runuser, "-u", user.pw_name, "--", *command]
            else:

                def preexec() -> None:
                    os.setgid(user.pw_gid)
                    os.setuid(user.pw_uid)

        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            preexec_fn=preexec,  # only without runuser, before any thread
            cwd=self.directory,
        )

    def init(self) -> None:
        """``initdb`` the cluster (UTF-8, C locale, trust) and write its settings."""
        if self._user is not None:
            os.chown(self.directory, self._user.pw_uid, self._user.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
            "--locale=C", "-N",
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.directory}'",
            "max_connections": "300",
            "shared_buffers": "'32MB'",
            "fsync": "off",
            "full_page_writes": "off",
            # Every statement is logged, prefixed with its application_name (%a): a test gives
            # a backend a unique one and counts its statements (count_statements). Parameters
            # are cut short: a megabyte event would otherwise be logged in full.
            "log_statement": "all",
            "log_parameter_max_length": "64",
            "log_line_prefix": "'%m [%p] %a: '",
            "log_min_messages": "warning",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# taskstore tests\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: sessions are ended; ``immediate``: as a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again, on the same port."""
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        """Whether the server process is up."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "status")
        except subprocess.CalledProcessError:
            return False
        return True

    def execute(self, statement: str, params: Any = None) -> list[Any]:
        """Run one statement as the superuser (autocommit); its rows, if any."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def psql(self, *args: str, user: str = SUPERUSER) -> subprocess.CompletedProcess[str]:
        """Run ``psql`` (from the cluster's binaries, else ``PATH``) against the
        ``postgres`` database."""
        binary = self.bin_dir / "psql"
        command = str(binary) if binary.exists() else shutil.which("psql")
        if command is None:
            unavailable("psql is not installed (apt-get install -y postgresql-client)")
        return subprocess.run(
            [command, "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", user, "-d", "postgres", *args],
            check=True, capture_output=True, text=True, timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
        )

    def remove(self) -> None:
        """Stop the server if it runs and delete its directory."""
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres_server() -> PostgresServer:
    """``initdb`` and start a private cluster in a new temporary directory (the caller removes
    it with :meth:`PostgresServer.remove`)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable(
            "the PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed "
            "(apt-get install -y postgresql)"
        )
    directory = Path(tempfile.mkdtemp(prefix="taskstore-pg-"))
    server = PostgresServer(bin_dir, directory, free_port())
    try:
        server.init()
        server.start()
    except subprocess.CalledProcessError as exc:
        log = server.log_path.read_text() if server.log_path.exists() else ""
        server.remove()
        raise RuntimeError(
            f"could not start PostgreSQL: {exc}\n{exc.stdout}\n{exc.stderr}\n{log}"
        ) from exc
    except BaseException:
        server.remove()
        raise
    return server


def count_statements(server: PostgresServer, application_name: str) -> int:
    """How many statements the server has logged for ``application_name`` (the cluster logs
    every statement): BEGIN and COMMIT count, as every statement does."""
    prefix = f" {application_name}: "
    count = 0
    with server.log_path.open(errors="replace") as log:
        for line in log:
            if prefix in line and re.search(r"LOG:\s+(statement|execute [^:]*):", line):
                count += 1
    return count


# -- session server ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for the whole session."""
    server = start_postgres_server()
    yield server
    server.remove()


class StoreUrl(str):
    """The session cluster's superuser URL, ``postgresql://postgres@127.0.0.1:PORT/postgres``,
    which is also a function: ``url(table=None, **query)`` is a store URL with the table (a
    fresh one by default) and further query options."""

    __slots__ = ()

    def __call__(self, table: str | None = None, **query: Any) -> str:
        """A store URL on the cluster for ``table`` (fresh if ``None``) and ``query``."""
        params = {"table": table or fresh_table(), **query}
        return f"{self}?{urlencode(params)}"


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> StoreUrl:
    """The session cluster's superuser URL (a ``str``); call it for a store URL with a
    table: ``postgres_url("jobs")`` or ``postgres_url()`` (a fresh table)."""
    return StoreUrl(postgres_server.url)


@pytest.fixture
def dedicated_postgres_server() -> Iterator[PostgresServer]:
    """A cluster of the test's own, free to stop and restart (fault tests)."""
    server = start_postgres_server()
    yield server
    server.remove()


# -- backend factory (named by the id of support.backends.BACKEND_PARAMS) --------------------------


@pytest.fixture
def backend_factory_postgres(postgres_server: PostgresServer) -> Iterator[PostgresFactory]:
    """``make(**options)``: a PostgresBackend on the session cluster, fresh table per call."""
    backends: list[PostgresBackend] = []

    def make(**options: Any) -> PostgresBackend:
        options.setdefault("table", fresh_table())
        backend = PostgresBackend.from_url(postgres_server.url, **options)
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        with contextlib.suppress(Exception):
            backend.close()
