"""Shared fixtures: the backend table every contract and store test runs over.

One table (``BACKEND_PARAMS``) drives parametrisation, as ``limits`` does: each entry names a
``backend_factory_<id>`` fixture returning ``make(**options) -> StorageBackend`` that gives a
fresh, empty namespace (key prefix or table) per call. Server-backed factories live in
``tests/support`` and skip with a reason when their server is missing, or fail when
``TASKSTORE_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.register_assert_rewrite("support")  # before the first import of the helpers

from support import servers
from support.backends import BACKEND_PARAMS, DRIVERS, NON_ATOMIC_BACKENDS, PLUGINS
from taskstore import ManualClock, TaskStore
from taskstore.backends.base import StorageBackend
from taskstore.backends.memory import InMemoryBackend
from taskstore.testing import T0

BackendFactory = Callable[..., StorageBackend]

# Fixture plugins whose drivers are installed; the rows they serve fail loudly without them.
pytest_plugins = [
    plugin for plugin, drivers in PLUGINS.items() if not servers.missing_modules(*drivers)
]


def pytest_configure(config: pytest.Config) -> None:
    """Hand the run's ``-m`` expression to the skip-or-fail helpers."""
    servers.configure(config)


@pytest.fixture
def backend_factory_memory() -> BackendFactory:
    """Fresh in-memory backends."""
    return lambda **options: InMemoryBackend(**options)


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The id of the backend under test."""
    name: str = request.param
    return name


@pytest.fixture
def backend_factory(request: pytest.FixtureRequest, backend_name: str) -> BackendFactory:
    """``make(**options)`` for the backend under test (skips, or fails under
    ``TASKSTORE_REQUIRE_SERVERS=1``, when the row's driver is missing)."""
    servers.need_modules(*DRIVERS[backend_name])
    factory: BackendFactory = request.getfixturevalue(f"backend_factory_{backend_name}")
    return factory


@pytest.fixture
def backend(backend_factory: BackendFactory) -> Iterator[StorageBackend]:
    """A fresh, empty backend of every kind in the table."""
    made = backend_factory()
    yield made
    made.close()


@pytest.fixture
def backend_is_atomic(backend_name: str) -> bool:
    """Whether races on this backend prove anything (not on moto)."""
    return backend_name not in NON_ATOMIC_BACKENDS


@pytest.fixture
def atomic_backend(backend_is_atomic: bool) -> None:
    """Skip the test on backends whose conditional writes are not atomic."""
    if not backend_is_atomic:
        pytest.skip("this backend's conditional writes are not atomic (a mock)")


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock at the suite's base time."""
    return ManualClock(T0)


@pytest.fixture
def make_store(
    backend_factory: BackendFactory, clock: ManualClock
) -> Iterator[Callable[..., TaskStore]]:
    """``make_store(**config)``: a TaskStore over a fresh backend, on the shared manual clock.

    Keyword arguments are StoreConfig/SecurityConfig fields; ``allow_anonymous`` defaults on
    only when asked.
    """
    from taskstore.config import StoreConfig
    from taskstore.security import SecurityConfig

    stores: list[TaskStore] = []

    def make(**options: Any) -> TaskStore:
        security_fields = set(SecurityConfig.__struct_fields__)
        security = {k: v for k, v in options.items() if k in security_fields}
        config = {k: v for k, v in options.items() if k not in security_fields}
        store = TaskStore(
            backend_factory(),
            config=StoreConfig(**config),
            security=SecurityConfig(**security),
            clock=clock,
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., TaskStore]) -> TaskStore:
    """A TaskStore with default settings over every backend of the table."""
    return make_store()
