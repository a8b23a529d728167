"""Table administration for the DynamoDB backend: the table definition and ``create_table``.

The backend never creates tables by itself; ``DynamoDbBackend.create_table`` (and
``python -m taskstore dynamodb create-table NAME``) do, with TTL enabled.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from taskstore.backends.dynamodb.client import DRIVER_ERRORS, backend_error, error_code, make_client
from taskstore.backends.dynamodb.items import INDEX
from taskstore.errors import ConfigurationError

__all__ = ["create_table", "table_definition"]


def table_definition(name: str) -> dict[str, Any]:
    """The ``CreateTable`` parameters of the table the backend needs: on-demand billing, the
    key schema and the ``by_created`` listing index. TTL on ``expires_at`` is a separate
    ``UpdateTimeToLive`` call."""
    return {
        "TableName": name,
        "AttributeDefinitions": [
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
            {"AttributeName": "lsk", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        "LocalSecondaryIndexes": [
            {
                "IndexName": INDEX,
                "KeySchema": [
                    {"AttributeName": "PK", "KeyType": "HASH"},
                    {"AttributeName": "lsk", "KeyType": "RANGE"},
                ],
                # Never "o" (nor "dx"): listings must not read or pay for outcomes.
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": ["d", "v", "x"],
                },
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


def create_table(
    name: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    client: Any = None,
    ttl: bool = True,
) -> None:
    """Create the table of :func:`table_definition` and wait until it is ``ACTIVE``; enable
    TTL on ``expires_at`` when ``ttl``.

    :raises ConfigurationError: the table already exists; no region configured.
    :raises BackendError: DynamoDB refused (permissions, limits, connection).
    """
    if client is None:
        client = make_client(region=region, endpoint_url=endpoint_url)
    operation = "CreateTable"
    try:
        client.create_table(**table_definition(name))
        operation = "DescribeTable"
        client.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        if ttl:
            operation = "UpdateTimeToLive"
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
            )
    except DRIVER_ERRORS as exc:
        if (
            operation == "CreateTable"
            and isinstance(exc, ClientError)
            and error_code(exc) == "ResourceInUseException"
        ):
            raise ConfigurationError(f"DynamoDB table {name!r} already exists") from exc
        raise backend_error(operation, exc) from exc
