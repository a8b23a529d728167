"""The shipped backend contract suite, run over every backend of the table."""

from __future__ import annotations

from taskstore.testing import BackendContract


class TestBackendContract(BackendContract):
    """``taskstore.testing.BackendContract`` with the ``backend`` fixture of ``conftest.py``."""
