"""JSON-RPC 2.0 building blocks shared by every MCP handler: codes, messages, protocol errors.

The taskstore error tree (:mod:`taskstore.errors`) covers task failures; :class:`ProtocolError`
covers the JSON-RPC failures that are not about a task (parse error, unknown method, malformed
request). Both turn into the same ``{"code", "message", "data"?}`` object on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from taskstore.errors import TaskStoreError

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

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

JsonDict = dict[str, Any]
#: A JSON-RPC request id: a string or an integer (never a boolean, never a float).
RequestId = Union[str, int]  # noqa: UP007 - a runtime alias; `|` needs 3.10 at runtime too


class ProtocolError(Exception):
    """A JSON-RPC error that is not a task error (unknown method, malformed request, ...).

    :param code: the JSON-RPC error code.
    :param message: text safe to send to the client.
    :param data: optional JSON ``data`` member.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_jsonrpc(self) -> JsonDict:
        """Return the JSON-RPC error object ``{"code", "message", "data"?}``."""
        error: JsonDict = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def error_object(exc: BaseException) -> JsonDict:
    """Map any exception to a JSON-RPC error object.

    Taskstore and protocol errors keep their code, message and data; anything else becomes a
    generic ``-32603`` whose message reveals nothing about the server's internals.
    """
    if isinstance(exc, (TaskStoreError, ProtocolError)):
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
