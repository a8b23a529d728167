"""DynamoDB fixtures, loaded by ``tests/conftest.py`` as a pytest plugin when boto3 is installed.

They serve two rows of the backend table (``support.backends``): moto (``mock_aws``, in-
process; imported only by its own fixture, so the DynamoDB Local row never needs it; its
conditional writes are not atomic, so races skip on it) and AWS's own DynamoDB Local, started
once per session on a free loopback port and stopped at its end. Each ``backend_factory_*``
fixture returns ``make(**options) -> DynamoDbBackend`` with a fresh table per call (creating
one costs about 10 ms on either). Without Java or the DynamoDB Local jar the Local row skips
with the reason, or fails when ``TASKSTORE_REQUIRE_SERVERS=1`` (CI). The jar is fetched by
``.ci/fetch-dynamodb-local.sh`` into ``$TASKSTORE_DYNAMODB_LOCAL_DIR`` (default
``~/.cache/taskstore/dynamodb-local``).

Both run with dummy credentials and region, and with the AWS config files pointed away, so a
developer's real AWS configuration is never read.

Two DynamoDB Local quirks shape this module. Its TTL sweeper only runs with ``-sharedDb`` (one
database for every access key and region), so the server starts with it. And the suite's
manual clock sits at 2026-01-01, in the wall clock's past: a sweeping table would delete
records the store still considers live, so the shared tables are created without TTL and only
the TTL test (``ttl=True``) turns it on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from support.servers import free_port, fresh_name, need_modules, unavailable
from taskstore.backends.dynamodb import DynamoDbBackend

__all__ = [
    "REGION",
    "DynamoDbLocal",
    "dynamodb_local_dir",
    "fresh_table_name",
    "make_client",
]

#: The dummy region every test uses.
REGION = "us-east-1"

DynamoDbFactory = Callable[..., DynamoDbBackend]

_DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    # Never wait on an instance-metadata lookup for credentials.
    "AWS_EC2_METADATA_DISABLED": "true",
}
_CLEARED_ENV = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_REGION")


def fresh_table_name() -> str:
    """A table name no other test uses."""
    return fresh_name()


def dynamodb_local_dir() -> Path:
    """Where ``.ci/fetch-dynamodb-local.sh`` installs DynamoDB Local."""
    configured = os.environ.get("TASKSTORE_DYNAMODB_LOCAL_DIR")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "taskstore" / "dynamodb-local"


_LOADER = botocore.loaders.create_loader()


def make_client(endpoint_url: str | None = None, **config: Any) -> Any:
    """A plain boto3 DynamoDB client with the dummy credentials (for set-up and inspection).

    Clients share one loader: parsing the service model for each one costs ~50 ms.
    """
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core).client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


class DynamoDbLocal:
    """A DynamoDB Local process (in memory, shared database) on a loopback port."""

    def __init__(self, java: str, directory: Path, log_dir: Path) -> None:
        self.java = java
        self.directory = directory
        self.log_dir = log_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the process and poll until it answers ``ListTables`` (about 2.5 s)."""
        log = (self.log_dir / f"dynamodb-local-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.java,
                # A short-lived server on a small machine: the C2 compiler and a parallel
                # collector only compete with the tests for CPU (start-up halves, ~2.9 s).
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
                f"-Djava.library.path={self.directory / 'DynamoDBLocal_lib'}",
                "-jar",
                str(self.directory / "DynamoDBLocal.jar"),
                "-inMemory",
                # Without it the TTL sweeper never deletes anything.
                "-sharedDb",
                "-port",
                str(self.port),
                "-disableTelemetry",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.log_dir,
        )
        log.close()
        client = make_client(
            self.endpoint_url, connect_timeout=0.5, read_timeout=2, retries={"max_attempts": 1}
        )
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"DynamoDB Local exited with {self.process.returncode}; see {self.log_dir}"
                    )
                try:
                    client.list_tables(Limit=1)
                    return
                except (BotoCoreError, ClientError):
                    if time.monotonic() > deadline:
                        self.stop()
                        raise
                    time.sleep(0.1)
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


# -- session server and environment -------------------------------------------------------------


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDbLocal]:
    """AWS DynamoDB Local for the whole session."""
    java = shutil.which("java")
    if java is None:
        unavailable("Java is not installed, so DynamoDB Local cannot run (Java 17+ needed)")
    directory = dynamodb_local_dir()
    if not (directory / "DynamoDBLocal.jar").is_file():
        unavailable(
            f"DynamoDB Local is not installed in {directory}; run .ci/fetch-dynamodb-local.sh"
        )
    with tempfile.TemporaryDirectory(prefix="taskstore-dynamodb-") as log_dir:
        server = DynamoDbLocal(java, directory, Path(log_dir))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials and region; the developer's AWS configuration is never read."""
    for name, value in _DUMMY_ENV.items():
        monkeypatch.setenv(name, value)
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def moto(aws_env: None) -> Iterator[Any]:
    """An active ``mock_aws`` and a client on it; yields the client."""
    need_modules("moto")
    from moto import mock_aws

    with mock_aws():
        client = make_client()
        try:
            yield client
        finally:
            client.close()


@pytest.fixture
def local_client(aws_env: None, dynamodb_local: DynamoDbLocal) -> Iterator[Any]:
    """A plain client on the session's DynamoDB Local."""
    client = make_client(dynamodb_local.endpoint_url)
    try:
        yield client
    finally:
        client.close()


# -- backend factories (named by the ids of support.backends.BACKEND_PARAMS) --------------------


def _factory(client: Any, endpoint_url: str | None) -> Iterator[DynamoDbFactory]:
    tables: list[str] = []
    backends: list[DynamoDbBackend] = []

    def make(*, ttl: bool = False, **options: Any) -> DynamoDbBackend:
        """A backend on a new table (TTL off unless ``ttl``, see the module docstring)."""
        name = fresh_table_name()
        DynamoDbBackend.create_table(name, client=client, ttl=ttl)
        tables.append(name)
        options.setdefault("region", REGION)
        if endpoint_url is not None:
            options.setdefault("endpoint_url", endpoint_url)
        backend = DynamoDbBackend(name, **options)
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        backend.close()
    for name in tables:
        with contextlib.suppress(BotoCoreError, ClientError):
            client.delete_table(TableName=name)


@pytest.fixture
def backend_factory_moto(moto: Any) -> Iterator[DynamoDbFactory]:
    """``make(**options)``: a DynamoDbBackend on a fresh moto table per call."""
    yield from _factory(moto, None)


@pytest.fixture
def backend_factory_dynamodb_local(
    local_client: Any, dynamodb_local: DynamoDbLocal
) -> Iterator[DynamoDbFactory]:
    """``make(**options)``: a DynamoDbBackend on a fresh DynamoDB Local table per call."""
    yield from _factory(local_client, dynamodb_local.endpoint_url)
