"""SQLite fixtures, loaded by ``tests/conftest.py`` as a pytest plugin (standard library only,
so always).

They serve the ``sqlite`` row of the backend table (``support.backends``):
``backend_factory_sqlite`` returns ``make(**options) -> SqliteBackend`` with a fresh database
file per call, in the session's temporary directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.servers import fresh_name
from taskstore.backends.sqlite import SqliteBackend

__all__ = ["SqliteFactory", "fresh_sqlite_path"]

SqliteFactory = Callable[..., SqliteBackend]


def fresh_sqlite_path(directory: Path) -> Path:
    """A database file path in ``directory`` no other test uses."""
    return directory / f"{fresh_name()}.db"


@pytest.fixture(scope="session")
def sqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's directory of SQLite database files."""
    return tmp_path_factory.mktemp("sqlite")


@pytest.fixture
def backend_factory_sqlite(sqlite_dir: Path) -> Iterator[SqliteFactory]:
    """``make(**options)``: a SqliteBackend on a fresh database file per call (options are the
    constructor's; ``path`` may be given to share a file)."""
    backends: list[SqliteBackend] = []

    def make(**options: Any) -> SqliteBackend:
        path = options.pop("path", None) or fresh_sqlite_path(sqlite_dir)
        backend = SqliteBackend(path, **options)
        backends.append(backend)
        return backend

    yield make
    # Callers close what they made; closing again is a no-op.
    for backend in backends:
        with contextlib.suppress(Exception):
            backend.close()
