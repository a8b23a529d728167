"""The shipped contract suites, run over every backend of the table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.backends import NON_ATOMIC_BACKENDS
from taskstore.backends.base import ScanningBackend, StorageBackend
from taskstore.backends.memory import InMemoryBackend
from taskstore.testing import BackendContract, StoreRulesContract
from taskstore.testing._scan import ScanContract


class TestBackendContract(BackendContract):
    """``taskstore.testing.BackendContract`` with the ``backend`` fixture of ``conftest.py``."""

    @pytest.fixture
    def backend_is_atomic(self, backend_name: str) -> bool:
        """moto's conditional writes are not atomic: races run on real servers only."""
        return backend_name not in NON_ATOMIC_BACKENDS


class TestStoreRules(StoreRulesContract):
    """``taskstore.testing.StoreRulesContract`` with the ``make_store`` fixture of
    ``conftest.py`` (a store over a fresh backend of each kind, on the manual clock)."""


class _WithoutScan:
    """An in-memory backend that does not declare the optional scan capability."""

    def __init__(self) -> None:
        self._inner = InMemoryBackend()

    def __getattr__(self, name: str) -> Any:
        if name == "scan":
            raise AttributeError(name)
        return getattr(self._inner, name)


class TestScanContractSkipsWithoutTheCapability(ScanContract):
    """The scan group over a backend without ``scan``: every test skips, naming the backend
    and what it lacks (a third-party backend's view of the optional capability)."""

    @pytest.fixture
    def backend(self) -> Iterator[StorageBackend]:
        """A backend that satisfies StorageBackend but not ScanningBackend."""
        made = _WithoutScan()
        assert isinstance(made, StorageBackend) and not isinstance(made, ScanningBackend)
        yield made  # type: ignore[misc]
        made.close()
