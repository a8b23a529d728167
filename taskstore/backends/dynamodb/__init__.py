"""DynamoDB backend: single table, conditional writes, native TTL, enforced item size (DESIGN §8).

Split by concern:

- :mod:`.backend`: :class:`DynamoDbBackend` and the table layout;
- :mod:`.writes`: the conditional writes and their retries;
- :mod:`.client`: boto3 client construction, retries and the one mapping of driver errors;
- :mod:`.items`: keys, attribute encoding, request expressions and item size;
- :mod:`.ledger`: the per-owner quota ledger that makes ``create``'s quota exact;
- :mod:`.listing`: listing pages and the cleanup scan over the listing index;
- :mod:`.waits`: events and waiting within one backend object;
- :mod:`.cache`: the bounded memories the backend keeps;
- :mod:`.admin`: the table definition and ``create_table``.

Importing this package needs boto3: without it, it raises
:class:`~taskstore.errors.MissingDependencyError` naming ``pip install 'taskstore[dynamodb]'``.
``import taskstore`` and ``taskstore.backends`` never import it.
"""

from __future__ import annotations

from taskstore.errors import MissingDependencyError

# Checked here, before any submodule: this package's __init__ runs on every import of it (also
# when a test re-imports it with boto3 hidden), while its submodules may already be loaded.
try:
    import boto3  # noqa: F401 - only checked here; the submodules use it
    import botocore  # noqa: F401
except ImportError:
    raise MissingDependencyError(
        "The 'boto3' package is needed for the DynamoDB backend: pip install 'taskstore[dynamodb]'"
    ) from None

from taskstore.backends.dynamodb.backend import DynamoDbBackend
from taskstore.backends.dynamodb.items import ITEM_LIMIT_BYTES

# Private, but importable from here for the tests that pin DynamoDB's number sizes.
from taskstore.backends.dynamodb.items import number_size as _number_size  # noqa: F401

__all__ = ["ITEM_LIMIT_BYTES", "DynamoDbBackend"]
