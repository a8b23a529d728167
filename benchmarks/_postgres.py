"""A private PostgreSQL cluster for the benchmarks: ``initdb`` into a temporary directory, started
on a free loopback port, removed at the end (a trimmed copy of what
``tests/support/postgres_support.py`` does; benchmarks do not import the tests).

The server binaries come from ``PATH`` or the newest ``/usr/lib/postgresql/<major>/bin``.
``initdb`` and ``postgres`` refuse to run as root: the cluster then belongs to the
``postgres`` system user (or ``nobody``) and every server command runs as that user through
``runuser`` (else ``setuid`` in the child). Statements are not logged by default; a connection
opened with ``options=-c log_statement=all`` and its own ``application_name`` has its
statements logged, and :meth:`PostgresCluster.count_statements` counts them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from _harness import free_port

__all__ = ["PostgresCluster", "find_bin_dir", "private_cluster"]

SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``."""
    found = shutil.which("initdb")
    if found is not None:
        directory = Path(os.path.realpath(found)).parent
        if (directory / "pg_ctl").exists() and (directory / "postgres").exists():
            return directory

    def major(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name) or ["0"])

    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=major,
        reverse=True,
    )
    return candidates[0] if candidates else None


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists")


class PostgresCluster:
    """One private cluster: trust authentication, the ``postgres`` superuser, loopback only."""

    def __init__(self, bin_dir: Path, directory: Path, *, durable: bool) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self.port = free_port()
        self.data = directory / "data"
        self.log_path = directory / "server.log"
        self.durable = durable
        self._user = _server_user()

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    @property
    def version(self) -> str:
        return self._run("postgres", "--version").stdout.strip()

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
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
            command, check=True, capture_output=True, text=True, timeout=120, env=env,
            preexec_fn=preexec, cwd=self.directory,
        )

    def start(self) -> None:
        if self._user is not None:
            os.chown(self.directory, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                  "--locale=C", "-N")
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.directory}'",
            "max_connections": "100",
            "log_parameter_max_length": "64",
            "log_line_prefix": "'%m [%p] %a: '",
            "log_min_messages": "warning",
        }
        if not self.durable:
            settings.update(fsync="off", full_page_writes="off", synchronous_commit="off")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# taskstore benchmarks\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60",
                  "start")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def count_statements(self, application_name: str) -> int:
        """Statements the server logged for ``application_name`` (BEGIN and COMMIT count)."""
        prefix = f" {application_name}: "
        count = 0
        with self.log_path.open(errors="replace") as log:
            for line in log:
                if prefix in line and re.search(r"LOG:\s+(statement|execute [^:]*):", line):
                    count += 1
        return count

    def logged(self, application_name: str) -> list[str]:
        """The statement lines logged for ``application_name``."""
        prefix = f" {application_name}: "
        with self.log_path.open(errors="replace") as log:
            return [
                line for line in log
                if prefix in line and re.search(r"LOG:\s+(statement|execute [^:]*):", line)
            ]


@contextlib.contextmanager
def private_cluster(*, durable: bool = True) -> Iterator[PostgresCluster]:
    """Start a private cluster (``durable=False``: fsync, full-page writes and synchronous
    commit off); stop and delete it at the end. Raises ``RuntimeError`` when the server
    binaries are missing or the cluster does not start."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    directory = Path(tempfile.mkdtemp(prefix="taskstore-bench-pg-"))
    cluster = PostgresCluster(bin_dir, directory, durable=durable)
    try:
        try:
            cluster.start()
        except subprocess.CalledProcessError as exc:
            log = cluster.log_path.read_text() if cluster.log_path.exists() else ""
            raise RuntimeError(f"could not start PostgreSQL: {exc.stderr}\n{log}") from exc
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
