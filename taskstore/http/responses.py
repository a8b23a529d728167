"""HTTP responses of the endpoint: status, headers, body (bytes or a stream of SSE chunks)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from taskstore.aliases import JsonDict, RequestId
from taskstore.mcp.jsonrpc import error_response

__all__ = [
    "JSON",
    "KEEPALIVE",
    "REASONS",
    "SERVER_BUSY",
    "SSE",
    "Response",
    "busy_error",
    "http_error",
    "json_response",
    "sse_event",
    "sse_stream",
]

JSON = "application/json"
SSE = "text/event-stream"
KEEPALIVE = b": keepalive\n\n"
_encoder = msgspec.json.Encoder()

#: JSON-RPC error code (implementation-defined range) of "the server is at capacity, retry
#: later": sent with HTTP 503 and ``Retry-After`` when the session table or the bundled
#: server's connections are full.
SERVER_BUSY = -32000

#: Reason phrases of the statuses the endpoint answers with.
REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


#: ``"200 OK"``, ... by status (built once: every response needs one).
_STATUS_LINES = {status: f"{status} {reason}" for status, reason in REASONS.items()}


class Response:
    """A status, headers and a body (bytes, or an iterable of chunks for a stream)."""

    #: The JSON-RPC error code of a JSON reply that is an error, for telemetry
    #: (:func:`json_response` sets it); ``None`` otherwise.
    rpc_error_code: int | None = None

    def __init__(
        self,
        status: int,
        body: bytes | Iterable[bytes] = b"",
        *,
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.headers = list(headers)
        if content_type is not None:
            self.headers.append(("Content-Type", content_type))
        if isinstance(body, bytes):
            self.headers.append(("Content-Length", str(len(body))))

    @property
    def status_line(self) -> str:
        """``"200 OK"``."""
        line = _STATUS_LINES.get(self.status)
        return line if line is not None else f"{self.status} "


def json_response(
    status: int, message: JsonDict, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """One JSON message."""
    response = Response(status, _encoder.encode(message), content_type=JSON, headers=headers)
    error = message.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        response.rpc_error_code = error["code"]
    return response


def http_error(status: int, code: int, text: str, **kwargs: Any) -> Response:
    """A transport-level refusal. It still carries a JSON-RPC error (without id), as the spec
    allows, so every non-202 body a client sees is JSON-RPC."""
    return json_response(status, error_response(None, {"code": code, "message": text}), **kwargs)


def busy_error(request_id: RequestId | None, text: str, retry_after_s: int) -> Response:
    """HTTP 503 with ``Retry-After`` and a JSON-RPC :data:`SERVER_BUSY` error (echoing the
    request's id, when there is one)."""
    return json_response(
        503,
        error_response(request_id, {"code": SERVER_BUSY, "message": text}),
        headers=[("Retry-After", str(retry_after_s))],
    )


def sse_event(message: JsonDict) -> bytes:
    """One SSE ``message`` event carrying ``message``."""
    return b"event: message\ndata: " + _encoder.encode(message) + b"\n\n"


def sse_stream(messages: Iterator[JsonDict | None]) -> Response:
    """An SSE response of ``messages`` (``None`` sends a keep-alive comment)."""
    return Response(
        200, _sse_chunks(messages), content_type=SSE, headers=[("Cache-Control", "no-cache")]
    )


def _sse_chunks(messages: Iterator[JsonDict | None]) -> Iterator[bytes]:
    try:
        for message in messages:
            yield KEEPALIVE if message is None else sse_event(message)
    finally:
        # Runs when the client disconnects too (the WSGI server closes the iterable).
        close = getattr(messages, "close", None)
        if close is not None:
            close()
