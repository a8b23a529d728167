"""One request's answer for the bundled server: a small PEP 3333 gateway that frames what the
WSGI application sends (:class:`_Exchange`), and the pieces every answer the server writes
itself shares (the ``Date`` header, JSON-RPC error bodies).

A body whose length is known goes out with ``Content-Length``, a streamed one chunked to an
HTTP/1.1 client or ended by the close for an HTTP/1.0 one; whatever would leave the
connection out of step with its client (a body off its ``Content-Length``, an unread request
body too large to skip, a failed write) makes the answer end the connection.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Literal, Protocol
from wsgiref.util import is_hop_by_hop

import msgspec

from taskstore.errors import INTERNAL_ERROR
from taskstore.http._bodies import _Body, _LengthBody
from taskstore.http.responses import JSON
from taskstore.mcp.jsonrpc import error_response

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

__all__ = ["_ClientGone", "_Exchange", "_error_body", "_http_date"]

_log = logging.getLogger("taskstore.wsgi")

_encoder = msgspec.json.Encoder()
# Answers that never carry a body whatever their headers say (RFC 9110 §15.3.5, §15.4.5).
_BODYLESS_STATUSES = frozenset({204, 304})


def _error_body(code: int, message: str) -> bytes:
    """A JSON-RPC error response with a null id (the request was never read as JSON-RPC)."""
    return _encoder.encode(error_response(None, {"code": code, "message": message}))


_INTERNAL_ERROR_BODY = _error_body(INTERNAL_ERROR, "Internal error")

_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The ``Date`` header's value, formatted once a second."""
    global _date_cache  # a benign race: both writers store the same value
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = formatdate(now, usegmt=True)
        _date_cache = (now, text)
    return text


class _ServerState(Protocol):
    """What an answer asks of the server: whether its connection may outlive it."""

    @property
    def closing(self) -> bool: ...

    @property
    def full(self) -> bool: ...


class _Connection(Protocol):
    """What :class:`_Exchange` uses of the connection it answers on, i.e. of
    :class:`taskstore.http._handler._Handler`. Declared here rather than imported so that the
    handler imports the exchange and never the other way round (no import cycle)."""

    @property
    def command(self) -> str: ...

    @property
    def protocol_version(self) -> str: ...

    @property
    def request_version(self) -> str: ...

    @property
    def max_drain_bytes(self) -> int: ...

    @property
    def server(self) -> _ServerState: ...

    @property
    def wfile(self) -> io.BufferedIOBase: ...


class _ClientGone(Exception):
    """A write to the client failed: it stopped reading or went away."""


class _Exchange:
    """One request's run of the WSGI application, and its answer's framing (PEP 3333)."""

    def __init__(self, handler: _Connection, body: _Body, close: bool) -> None:
        self._handler = handler
        self._body = body
        #: The connection ends after this answer.
        self.close = close
        self.status: str | None = None
        self.code = 0
        self._headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self._framing: Literal["length", "chunked", "close", "none"] = "none"
        self._length: int | None = None  # the application's Content-Length
        self.sent = 0  # body bytes sent
        #: The answer went out whole and well framed.
        self.complete = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], object]:
        """PEP 3333's ``start_response``."""
        error = None if exc_info is None else exc_info[1]
        if error is not None:
            if self.headers_sent:  # too late to answer otherwise: the connection ends
                raise error.with_traceback(error.__traceback__)
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        code = status[:3]
        if not (isinstance(status, str) and code.isdigit() and status[3:4] == " "):
            raise AssertionError(f"invalid status {status!r}")
        for name, value in headers:
            if is_hop_by_hop(name):
                raise AssertionError(f"hop-by-hop header {name!r} from the application")
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
                raise AssertionError(f"invalid header {name!r}")
        self.status, self.code, self._headers = status, int(code), list(headers)
        return self.write

    def write(self, data: bytes, *, last: bool = False) -> None:
        """Send ``data`` (the head first, with the answer's framing); ``last``: ``data`` is
        the whole body."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not self.headers_sent:
            if data or last:  # PEP 3333: the head goes with the first non-empty chunk
                self._send_head(data, last)
            return
        if data:
            self._send_body(data)

    def finish(self) -> None:
        """End the answer (the head, if nothing was written; the last chunk)."""
        if not self.headers_sent:
            self.write(b"", last=True)
        if self._framing == "chunked":
            self._send(b"0\r\n\r\n")
        elif self._framing == "length" and self.sent != self._length:
            _log.error(
                "the application sent %d body bytes for a Content-Length of %s",
                self.sent,
                self._length,
            )
            self.close = True
            return
        self.complete = True

    def fail(self) -> None:
        """The application failed: a 500 in JSON-RPC if nothing was sent yet, else the
        connection ends (the client sees a cut answer)."""
        self.close = True
        if self.headers_sent:
            return
        self.status, self.code, self._length = "500 Internal Server Error", 500, None
        self._headers = [("Content-Type", JSON)]
        self.write(_INTERNAL_ERROR_BODY, last=True)
        self.complete = True

    def _send_head(self, data: bytes, last: bool) -> None:
        handler = self._handler
        bodyless = handler.command == "HEAD" or self.code < 200 or self.code in _BODYLESS_STATUSES
        lines = [f"{handler.protocol_version} {self.status}\r\nDate: {_http_date()}\r\n"]
        for name, value in self._headers:
            if name.lower() == "content-length":
                try:
                    self._length = int(value)
                except ValueError:
                    raise AssertionError(f"invalid Content-Length {value!r}") from None
            lines.append(f"{name}: {value}\r\n")
        if bodyless:
            self._framing = "none"
        elif self._length is not None:
            self._framing = "length"
        elif last:
            self._framing, self._length = "length", len(data)
            lines.append(f"Content-Length: {len(data)}\r\n")
        elif handler.request_version >= "HTTP/1.1":
            self._framing = "chunked"
            lines.append("Transfer-Encoding: chunked\r\n")
        else:
            self._framing, self.close = "close", True  # an HTTP/1.0 client: ends at the close
        if not self._body.complete and (
            self._body.failed
            or not isinstance(self._body, _LengthBody)
            or self._body.remaining > handler.max_drain_bytes
        ):
            self.close = True  # an unread body this connection will not skip
        if self.close or handler.server.closing or handler.server.full:
            self.close = True
            lines.append("Connection: close\r\n")
        elif handler.request_version < "HTTP/1.1":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        self.headers_sent = True
        if bodyless or not data:
            self._send(head)
        else:
            self._send_body(data, head)

    def _send_body(self, data: bytes, head: bytes = b"") -> None:
        if self._framing == "none":
            if head:
                self._send(head)
            return
        if self._framing == "chunked":
            self.sent += len(data)
            self._send(b"%s%X\r\n%s\r\n" % (head, len(data), data))
            return
        if self._framing == "length":
            assert self._length is not None
            room = self._length - self.sent
            if len(data) > room:
                _log.error("the application sent more body than its Content-Length")
                data, self.close = data[:room], True
        self.sent += len(data)
        self._send(head + data if head else data)

    def _send(self, data: bytes) -> None:
        try:
            self._handler.wfile.write(data)
        except OSError as exc:
            raise _ClientGone(str(exc)) from exc
