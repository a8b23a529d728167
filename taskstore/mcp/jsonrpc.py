"""JSON-RPC 2.0 message builders shared by every MCP handler.

The error codes and :class:`~taskstore.errors.ProtocolError` live in :mod:`taskstore.errors`
(the one error tree) and the ``JsonDict``/``RequestId`` aliases in :mod:`taskstore.aliases`;
they are re-exported here for convenience.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskstore.aliases import JsonDict, RequestId
from taskstore.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    ProtocolError,
    TaskStoreError,
)

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "JsonDict",
    "ProtocolError",
    "RequestId",
    "error_object",
    "error_response",
    "is_valid_id",
    "notification",
    "request",
    "result_response",
]

def error_object(exc: BaseException) -> JsonDict:
    """Map any exception to a JSON-RPC error object.

    Taskstore and protocol errors keep their code, message and data; anything else becomes a
    generic ``-32603`` whose message reveals nothing about the server's internals.
    """
    if isinstance(exc, TaskStoreError):
        return exc.to_jsonrpc()
    return {"code": INTERNAL_ERROR, "message": "Internal error"}


def is_valid_id(value: object) -> bool:
    """``True`` for ids a request may carry: strings and integers (``0`` included), not bools."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def result_response(request_id: RequestId, result: Mapping[str, Any]) -> JsonDict:
    """A JSON-RPC success response."""
    return {"jsonrpc": "2.0", "id": request_id, "result": dict(result)}


def error_response(request_id: RequestId | None, error: Mapping[str, Any]) -> JsonDict:
    """A JSON-RPC error response (``id`` is ``null`` when the request id is unknown)."""
    return {"jsonrpc": "2.0", "id": request_id, "error": dict(error)}


def notification(method: str, params: Mapping[str, Any] | None = None) -> JsonDict:
    """A JSON-RPC notification."""
    message: JsonDict = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = dict(params)
    return message


def request(
    request_id: RequestId, method: str, params: Mapping[str, Any] | None = None
) -> JsonDict:
    """A JSON-RPC request (server → client, e.g. ``elicitation/create``)."""
    message: JsonDict = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = dict(params)
    return message
