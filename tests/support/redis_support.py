"""Redis fixtures, loaded by ``tests/conftest.py`` as a pytest plugin when redis-py is
installed.

They serve three rows of the backend table (``support.backends``): fakeredis (in-process;
imported only by its own fixture, so the real-server rows never need it), a real
``redis-server`` and a 3-node Redis Cluster, both started once per session on free loopback
ports and stopped at its end. Each ``backend_factory_*`` fixture returns
``make(**options) -> RedisBackend`` with a fresh key prefix per call. Without ``redis-server``
the server rows skip with the reason, or fail when ``TASKSTORE_REQUIRE_SERVERS=1`` (CI).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from support.servers import free_port, fresh_name, need_modules, unavailable
from taskstore.backends.redis import RedisBackend

if TYPE_CHECKING:
    import fakeredis

__all__ = [
    "LocalCluster",
    "RedisServer",
    "free_port",
    "fresh_prefix",
    "start_cluster",
    "start_redis_server",
]

RedisFactory = Callable[..., RedisBackend]


def fresh_prefix() -> str:
    """A key prefix no other test uses."""
    return fresh_name()


def _redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install -y redis-server)")
    return binary


class RedisServer:
    """A ``redis-server`` process on a loopback port, without persistence; restartable on the
    same port (for fault tests)."""

    def __init__(self, binary: str, port: int, directory: Path, extra: tuple[str, ...] = ()):
        self.binary = binary
        self.port = port
        self.directory = directory
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the process and wait until it answers PING."""
        log = (self.directory / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}; see {self.directory}"
                )
            client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=1)
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL) and wait for it."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.process is not None:
            process, self.process = self.process, None
            process.kill()
            process.wait(10)


def start_redis_server(
    directory: Path, port: int | None = None, extra: tuple[str, ...] = ()
) -> RedisServer:
    """Start a standalone ``redis-server`` (``--save '' --appendonly no``, plus ``extra``
    arguments) and return it."""
    server = RedisServer(_redis_server_binary(), port or free_port(), directory, extra)
    server.start()
    return server


class LocalCluster:
    """Three ``redis-server --cluster-enabled yes`` primaries joined into one cluster."""

    def __init__(self, nodes: list[RedisServer]):
        self.nodes = nodes

    @property
    def url(self) -> str:
        """A ``redis://`` URL of one node (``cluster=true`` discovers the others)."""
        return self.nodes[0].url

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


def _cluster_ok(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER INFO")
    if isinstance(info, dict):  # redis-py parses the reply into a dict
        return info.get("cluster_state") in ("ok", b"ok")
    return b"cluster_state:ok" in info


def start_cluster(directory: Path, size: int = 3, timeout_s: float = 30.0) -> LocalCluster:
    """Start ``size`` cluster-enabled nodes, create the cluster and wait for cluster_state:ok."""
    binary = _redis_server_binary()
    cli = shutil.which("redis-cli")
    if cli is None:
        unavailable("redis-cli is not installed (apt-get install -y redis-server)")
    nodes: list[RedisServer] = []
    try:
        for _ in range(size):
            port = free_port(bus=True)
            node = RedisServer(
                binary,
                port,
                directory,
                (
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "5000",
                ),
            )
            node.start()
            nodes.append(node)
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            client = redis.Redis(port=node.port)
            try:
                while not _cluster_ok(client):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
                    time.sleep(0.05)
            finally:
                client.close()
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return LocalCluster(nodes)


# -- session servers ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_tmp_dir() -> Iterator[Path]:
    """A scratch directory for server logs and cluster config files."""
    with tempfile.TemporaryDirectory(prefix="taskstore-redis-") as directory:
        yield Path(directory)


@pytest.fixture(scope="session")
def redis_server(redis_tmp_dir: Path) -> Iterator[RedisServer]:
    """A real redis-server for the whole session."""
    server = start_redis_server(redis_tmp_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(redis_tmp_dir: Path) -> Iterator[LocalCluster]:
    """A real 3-node Redis Cluster for the whole session."""
    cluster = start_cluster(redis_tmp_dir)
    yield cluster
    cluster.stop()


@pytest.fixture
def dedicated_redis_server(redis_tmp_dir: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, free to stop and restart (fault tests)."""
    server = start_redis_server(redis_tmp_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_redis_server() -> fakeredis.FakeServer:
    """One fakeredis server for the session; tests are isolated by key prefix."""
    need_modules("fakeredis")
    import fakeredis

    return fakeredis.FakeServer()


# -- backend factories (named by the ids of support.backends.BACKEND_PARAMS) --------------------


@pytest.fixture
def backend_factory_fakeredis(fake_redis_server: fakeredis.FakeServer) -> Iterator[RedisFactory]:
    """``make(**options)``: a RedisBackend over a fakeredis client, fresh prefix per call."""
    import fakeredis

    clients: list[fakeredis.FakeRedis] = []
    backends: list[RedisBackend] = []

    def make(**options: Any) -> RedisBackend:
        client = fakeredis.FakeRedis(server=fake_redis_server)
        clients.append(client)
        options.setdefault("prefix", fresh_prefix())
        backend = RedisBackend(client, **options)
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        backend.close()
    for client in clients:
        client.close()


def _url_factory(url: str, **defaults: Any) -> Iterator[RedisFactory]:
    backends: list[RedisBackend] = []

    def make(**options: Any) -> RedisBackend:
        options.setdefault("prefix", fresh_prefix())
        backend = RedisBackend.from_url(url, **{**defaults, **options})
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        with contextlib.suppress(Exception):
            backend.close()


@pytest.fixture
def backend_factory_redis(redis_server: RedisServer) -> Iterator[RedisFactory]:
    """``make(**options)``: a RedisBackend on the session's redis-server, fresh prefix per call."""
    yield from _url_factory(redis_server.url)


@pytest.fixture
def backend_factory_redis_cluster(redis_cluster: LocalCluster) -> Iterator[RedisFactory]:
    """``make(**options)``: a RedisBackend on the session's Redis Cluster, fresh prefix per
    call."""
    yield from _url_factory(redis_cluster.url, cluster=True)
