"""The backend contract suite (DESIGN §6), shipped so every backend, ours or yours, runs it.

Subclass :class:`BackendContract` in a pytest module, name the subclass ``Test…`` and provide a
``backend`` fixture that yields a fresh, empty backend (a new key prefix or table per test)::

    import pytest
    from taskstore.testing import BackendContract

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self):
            backend = MyBackend(...)
            yield backend
            backend.close()

Every test passes ``now_ms`` explicitly, so expiry is tested without sleeping. The scan tests
(``test_scan_*``) run only on a backend with a ``scan`` method (the optional
:class:`~taskstore.backends.base.ScanningBackend` capability) and skip otherwise. The concurrency
tests need real atomicity: a test double whose conditional writes are not atomic (moto)
overrides the ``backend_is_atomic`` fixture to return ``False`` and they skip. Requires pytest
(the ``test`` extra).

:class:`StoreRulesContract` runs the store's rules at the edges (finishing a task again, the
latest expiry, field caps, owners no key can hold) through a real store over your backend;
subclass it too, with a ``make_store(**fields)`` fixture that builds a ``TaskStore`` over a
fresh backend on a ``ManualClock(T0)``.
"""

from __future__ import annotations

import pytest

from taskstore.testing._concurrency import ConcurrencyContract
from taskstore.testing._events import EventsContract
from taskstore.testing._listing import ListingContract
from taskstore.testing._records import RecordsContract
from taskstore.testing._scan import ScanContract
from taskstore.testing._store_rules import StoreRulesContract
from taskstore.testing._support import FUTURE, T0, TRICKY_OWNERS, run_barrier_threads

__all__ = [
    "FUTURE",
    "T0",
    "TRICKY_OWNERS",
    "BackendContract",
    "StoreRulesContract",
    "run_barrier_threads",
]


class BackendContract(
    RecordsContract, ListingContract, ScanContract, EventsContract, ConcurrencyContract
):
    """Tests every rule of the :class:`~taskstore.backends.base.StorageBackend` contract, and
    of the optional :class:`~taskstore.backends.base.ScanningBackend` capability when the
    backend declares it (its tests skip, saying so, when it does not).

    Subclasses provide a ``backend`` fixture (fresh and empty for each test).
    """

    @pytest.fixture
    def backend_is_atomic(self) -> bool:
        """Whether the backend's conditional writes are really atomic (override for mocks)."""
        return True
