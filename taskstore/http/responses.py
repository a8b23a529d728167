"""HTTP responses of the endpoint: status, headers, body (bytes or a stream of SSE chunks)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from taskstore.aliases import JsonDict
from taskstore.mcp.jsonrpc import error_response

__all__ = [
    "JSON",
    "KEEPALIVE",
    "REASONS",
    "SSE",
    "Response",
    "http_error",
    "json_response",
    "sse_event",
    "sse_stream",
]

JSON = "application/json"
SSE = "text/event-stream"
KEEPALIVE = b": keepalive\n\n"
_encoder = msgspec.json.Encoder()

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
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
}


class Response:
    """A status, headers and a body (bytes, or an iterable of chunks for a stream)."""

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
        return f"{self.status} {REASONS.get(self.status, '')}"


def json_response(
    status: int, message: JsonDict, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """One JSON message."""
    return Response(status, _encoder.encode(message), content_type=JSON, headers=headers)


def http_error(status: int, code: int, text: str, **kwargs: Any) -> Response:
    """A transport-level refusal. It still carries a JSON-RPC error (without id), as the spec
    allows, so every non-202 body a client sees is JSON-RPC."""
    return json_response(status, error_response(None, {"code": code, "message": text}), **kwargs)


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
