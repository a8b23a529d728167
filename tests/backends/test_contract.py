"""The shipped contract suites, run over every backend of the table."""

from __future__ import annotations

import pytest

from support.backends import NON_ATOMIC_BACKENDS
from taskstore.testing import BackendContract, StoreRulesContract


class TestBackendContract(BackendContract):
    """``taskstore.testing.BackendContract`` with the ``backend`` fixture of ``conftest.py``."""

    @pytest.fixture
    def backend_is_atomic(self, backend_name: str) -> bool:
        """moto's conditional writes are not atomic: races run on real servers only."""
        return backend_name not in NON_ATOMIC_BACKENDS


class TestStoreRules(StoreRulesContract):
    """``taskstore.testing.StoreRulesContract`` with the ``make_store`` fixture of
    ``conftest.py`` (a store over a fresh backend of each kind, on the manual clock)."""
