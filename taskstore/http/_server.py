"""The bundled server's HTTP/1.1 connections: persistent, pipelining-safe, bounded in time
and size, answering every refusal in JSON-RPC.

One thread serves one connection, request after request (:class:`_Handler`), and runs the
WSGI application for each (:class:`_Exchange`, a small PEP 3333 gateway). How a connection
stays correct for its next request:

- **Request bodies are framed exactly.** ``wsgi.input`` ends at ``Content-Length`` (or at
  the last chunk of a ``Transfer-Encoding: chunked`` body, de-chunked, with
  ``wsgi.input_terminated``); a ``Content-Length`` that is not one decimal number, or that
  comes with ``Transfer-Encoding``, gets 400 and the connection is closed. After the answer,
  an unread rest of the body up to :attr:`_Handler.max_drain_bytes` is read and discarded;
  a larger one closes the connection (the answer then says ``Connection: close``).
- **Responses are framed exactly.** A body whose length is known is sent with
  ``Content-Length`` (the application's own, or computed for a one-chunk body); a streamed
  one (SSE) with ``Transfer-Encoding: chunked`` to an HTTP/1.1 client, or ended by closing
  the connection for an HTTP/1.0 one. A body shorter or longer than its ``Content-Length``,
  an application that fails mid-body, or a write that fails closes the connection.
- **Persistence follows the client.** ``Connection: close`` from the client, an HTTP/1.0
  client without ``Connection: keep-alive``, or a server shutting down or full: the answer
  says ``Connection: close`` and the connection ends after it.
- **Time.** The first request must arrive whole (line, headers, body) within the read
  timeout of the connection being accepted, each later one within the read timeout of its
  first byte (else 408); between requests a connection may stay idle for the keep-alive
  timeout, then it is closed quietly. Each write must progress within the read timeout.
- **Refusals** (400, 408, 414, 431, 501, 505, and 503 at the connection cap) are JSON-RPC
  errors with ``Content-Type: application/json`` and close the connection; the server
  first reads what the client still sends for a moment (a "lingering close"), so the
  answer is not destroyed by a reset.
- **The connection cap counts every open connection, idle ones included.** While every slot
  is taken, answers say ``Connection: close``, so no connection idles on a full server; a
  connection arriving at the cap takes the place of the connection idle the longest if it
  has been idle for ``replace_idle_after_s`` (1 s: a client that just got its answer is not
  cut off as it sends its next request), which is closed; otherwise it is answered 503.
"""

from __future__ import annotations

import http.client
import io
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from email.utils import formatdate
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.util import is_hop_by_hop

import msgspec

from taskstore.errors import INTERNAL_ERROR, INVALID_REQUEST
from taskstore.http.responses import JSON, REASONS, SERVER_BUSY
from taskstore.mcp.jsonrpc import error_response

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

__all__ = [
    "DEFAULT_KEEPALIVE_TIMEOUT_S",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT_S",
    "ThreadingWSGIServer",
    "ThreadingWSGIServerV6",
]

_log = logging.getLogger("taskstore.wsgi")

#: Seconds a request has to arrive whole (and each write to progress).
DEFAULT_READ_TIMEOUT_S = 60.0
#: Connections served at once; keep it below the open-file limit (``ulimit -n``, often 1024).
DEFAULT_MAX_CONNECTIONS = 512
#: Seconds a kept-alive connection may stay idle between requests. Longer than the idle
#: timeouts of common clients' connection pools (httpx 5 s, Node's undici 4 s), so a client
#: reuses a connection before the server closes it rather than racing with its close.
DEFAULT_KEEPALIVE_TIMEOUT_S = 15.0

#: How long, and how much, a closing connection still reads so that its last answer is not
#: destroyed by a reset (closing a socket with unread input resets the connection).
_LINGER_S = 1.0
_LINGER_BYTES = 1024 * 1024

_encoder = msgspec.json.Encoder()
_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_BODYLESS_STATUSES = frozenset({204, 304})


def _error_body(code: int, message: str) -> bytes:
    return _encoder.encode(error_response(None, {"code": code, "message": message}))


_BUSY_BODY = _error_body(SERVER_BUSY, "Server busy: too many open connections; retry later")
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n" + _BUSY_BODY
)
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


# -- the server: threads, the connection cap, idle connections --------------------------------


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """``wsgiref``'s server with a thread per connection (so a blocking ``tasks/result`` or
    an open stream never stalls other requests), persistent HTTP/1.1 connections, a
    connection cap and a read timeout.

    :ivar read_timeout_s: seconds a request has to arrive whole (from the connection's
        acceptance for its first request, from its first byte for later ones); also the
        timeout of each write.
    :ivar max_connections: connections open at once, idle kept-alive ones included. At the
        cap, answers say ``Connection: close`` (no connection stays idle while the server is
        full), and a new connection takes the place of the one idle the longest if it has
        been idle for :attr:`replace_idle_after_s`, else it is answered 503 and closed.
    :ivar keepalive_timeout_s: seconds a connection may stay idle between two requests.
    :ivar replace_idle_after_s: how long a connection must have been idle before a new one
        may take its place at the cap (a client that just got its answer is not cut off as
        it sends its next request).
    """

    daemon_threads = True
    # 8+ concurrent clients connecting at once overflow the default backlog of 5.
    request_queue_size = 128
    allow_reuse_address = True
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    replace_idle_after_s: float = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open = 0
        self._open_lock = threading.Lock()
        # Idle kept-alive connections and since when (monotonic), the one idle longest first.
        self._idle: dict[socket.socket, float] = {}
        # Idle connections closed to make room: their slot went to a new connection.
        self._handed_over: set[socket.socket] = set()
        self._closing = False
        self._warned_at: float | None = None
        super().__init__(*args, **kwargs)

    @property
    def open_connections(self) -> int:
        """Connections being served now, idle kept-alive ones included."""
        with self._open_lock:
            return self._open

    @property
    def idle_connections(self) -> int:
        """Kept-alive connections waiting for their next request."""
        with self._open_lock:
            return len(self._idle)

    @property
    def closing(self) -> bool:
        """Whether the server is shutting down (connections end after their answer)."""
        return self._closing

    @property
    def full(self) -> bool:
        """Whether every connection slot is taken (answers then end their connection)."""
        return self._open >= self.max_connections  # one read: no lock needed

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread; at the cap, in the place of the connection idle
        the longest (closed) if it has been idle long enough, else refuse it with 503."""
        with self._open_lock:
            admitted = True
            if self._open < self.max_connections:
                self._open += 1
            elif not self._hand_over_oldest_idle():
                admitted = False
        if not admitted:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # the thread did not start: its slot is free again
            self._release(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection (in its own thread), then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failure that escaped the handler (never print it to stderr)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            _log.debug("connection from %s failed: %s", client_address, exc)
        else:
            _log.error("error serving %s", client_address, exc_info=True)

    def shutdown(self) -> None:
        """Stop accepting connections; idle ones are closed, busy ones end after their
        answer."""
        self._close_idle()
        super().shutdown()

    def server_close(self) -> None:
        """Close the listening socket and every idle connection."""
        self._close_idle()
        super().server_close()

    # -- what connections tell the server ---------------------------------------------------

    def idle_begin(self, sock: socket.socket) -> bool:
        """``sock`` waits for its next request; ``False``: close it instead (shutting down)."""
        with self._open_lock:
            if self._closing:
                return False
            self._idle[sock] = time.monotonic()
            return True

    def idle_end(self, sock: socket.socket) -> bool:
        """``sock`` stops waiting; ``False``: it was closed meanwhile to make room, or the
        server is shutting down (serve nothing more on it)."""
        with self._open_lock:
            return self._idle.pop(sock, None) is not None and not self._closing

    # -- internals --------------------------------------------------------------------------

    def _hand_over_oldest_idle(self) -> bool:
        """Close the connection idle the longest, if idle for long enough; its slot goes to
        a new one (lock held). Whether one was closed.

        Shutting the socket down wakes its thread, which closes it; it cannot have closed it
        yet (it leaves the idle set under this lock first), so the descriptor is its own."""
        oldest = next(iter(self._idle.items()), None)
        if oldest is None or time.monotonic() - oldest[1] < self.replace_idle_after_s:
            return False
        sock = oldest[0]
        del self._idle[sock]
        self._handed_over.add(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        _log.debug("connection cap reached: closed the connection idle the longest")
        return True

    def _close_idle(self) -> None:
        with self._open_lock:
            self._closing = True
            idle, self._idle = list(self._idle), {}
            for sock in idle:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _release(self, request: socket.socket) -> None:
        with self._open_lock:
            if request in self._handed_over:
                self._handed_over.discard(request)
            else:
                self._open -= 1

    def _refuse(self, request: socket.socket) -> None:
        """Answer 503 on the accepting thread, without waiting for the client."""
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= 60.0:  # a flood: one line a minute
            self._warned_at = now
            _log.warning(
                "connection cap reached (%d open): refusing new connections with 503",
                self.max_connections,
            )
        try:
            request.setblocking(False)
            # Read what already arrived: closing a socket with unread data resets the
            # connection, which can destroy the answer before the client reads it.
            try:
                request.recv(65536)
            except OSError:
                pass
            request.send(_BUSY_RESPONSE)  # a fresh socket's buffer takes it whole
        except OSError:
            pass
        finally:
            self.shutdown_request(request)


class ThreadingWSGIServerV6(ThreadingWSGIServer):
    """:class:`ThreadingWSGIServer` on IPv6."""

    address_family = socket.AF_INET6


# -- reading and writing the socket -----------------------------------------------------------


class _DeadlineReader(io.RawIOBase):
    """Reads a socket until a deadline: each receive may wait only for the time left, so a
    client that trickles bytes cannot hold the connection longer than a stalled one."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _TimedWriter(io.BufferedIOBase):
    """Writes to a socket, each write allowed ``timeout`` seconds to go through."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.settimeout(self._timeout)
        self._sock.sendall(data)
        return memoryview(data).nbytes


class _HeaderSectionTooLarge(http.client.LineTooLong):
    """The header section is over the handler's budget (answered 431, like a long line)."""

    def __init__(self, budget: int) -> None:
        http.client.HTTPException.__init__(self, f"the header section exceeds {budget} bytes")


class _HeaderBudget(io.BufferedIOBase):
    """The request's reader while its headers are parsed: past ``budget`` bytes, the header
    section is too large (``http.client`` caps only each line and the number of lines)."""

    def __init__(self, rfile: io.BufferedIOBase, budget: int) -> None:
        self._rfile = rfile
        self._budget = budget
        self._left = budget

    def readline(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._left + 1  # http.client always bounds its lines; stay bounded anyway
        line = self._rfile.readline(size)
        self._left -= len(line)
        # A line filling ``size`` is too long by itself: http.client says so, more precisely.
        if self._left < 0 and len(line) < size:
            raise _HeaderSectionTooLarge(self._budget)
        return line


# -- request bodies ---------------------------------------------------------------------------


class _MalformedBody(OSError):
    """The request body is not framed as its headers say (applications treat it as a body
    that could not be read)."""


class _Body:
    """``wsgi.input``: the request body, and nothing past it (PEP 3333's ``read``,
    ``readline``, ``readlines`` and iteration)."""

    def __init__(self, rfile: io.BufferedReader[Any]) -> None:
        self._rfile = rfile
        #: A read failed (timeout, disconnect, bad framing): the connection cannot be reused.
        self.failed = False
        #: The read that failed timed out: the client stalled.
        self.stalled = False

    @property
    def complete(self) -> bool:
        """Whether the whole body has been read."""
        raise NotImplementedError

    def _failed(self, exc: BaseException) -> None:
        self.failed = True
        self.stalled = self.stalled or isinstance(exc, TimeoutError)

    def _take(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body (``-1``: all of it); empty at its end."""
        raise NotImplementedError

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when ``size`` is negative or ``None``)."""
        try:
            return self._take(-1 if size is None or size < 0 else size)
        except BaseException as exc:
            self._failed(exc)
            raise

    def readline(self, size: int | None = -1) -> bytes:
        """One line of the body (at most ``size`` bytes)."""
        line = bytearray()
        limit = -1 if size is None or size < 0 else size
        while limit < 0 or len(line) < limit:
            byte = self.read(1)
            if not byte:
                break
            line += byte
            if byte == b"\n":
                break
        return bytes(line)

    def readlines(self, hint: int = -1) -> list[bytes]:
        """The body's lines (until about ``hint`` bytes, when positive)."""
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def drain(self, budget: int) -> bool:
        """Read and discard the rest of the body, if it is at most ``budget`` bytes; whether
        the connection may carry another request."""
        if self.failed:
            return False
        try:
            while not self.complete:
                chunk = self.read(min(budget + 1, 65536))
                budget -= len(chunk)
                if budget < 0 or not (chunk or self.complete):
                    return False
        except OSError:
            return False
        return not self.failed


class _LengthBody(_Body):
    """A body of ``Content-Length`` bytes."""

    def __init__(self, rfile: io.BufferedReader[Any], length: int) -> None:
        super().__init__(rfile)
        self.remaining = length

    @property
    def complete(self) -> bool:
        return self.remaining == 0 and not self.failed

    def _take(self, size: int) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        if size == 0:
            return b""
        data = self._rfile.read(size)
        self.remaining -= len(data)
        if len(data) < size:
            raise _MalformedBody("the client closed the connection mid-body")
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = self.remaining if size is None or size < 0 else min(size, self.remaining)
        try:
            line = self._rfile.readline(limit) if limit else b""
        except BaseException as exc:
            self._failed(exc)
            raise
        self.remaining -= len(line)
        return line


class _ChunkedBody(_Body):
    """A ``Transfer-Encoding: chunked`` body, de-chunked (trailers are read and dropped)."""

    #: Longest chunk-size or trailer line; at most this many trailer lines.
    max_line = 4096
    max_trailers = 100

    def __init__(self, rfile: io.BufferedReader[Any]) -> None:
        super().__init__(rfile)
        self._left = 0  # bytes left in the current chunk
        self._ended = False

    @property
    def complete(self) -> bool:
        return self._ended and not self.failed

    def _take(self, size: int) -> bytes:
        out = bytearray()
        while not self._ended and (size < 0 or len(out) < size):
            if self._left == 0:
                self._left = self._chunk_size()
                if self._left == 0:
                    self._end()
                    break
            want = self._left if size < 0 else min(self._left, size - len(out))
            data = self._rfile.read(want)
            if len(data) < want:
                raise _MalformedBody("the client closed the connection mid-body")
            out += data
            self._left -= want
            if self._left == 0 and self._line() not in (b"\r\n", b"\n"):
                raise _MalformedBody("a chunk does not end with CRLF")
        return bytes(out)

    def _line(self) -> bytes:
        line = self._rfile.readline(self.max_line + 1)
        if len(line) > self.max_line or not line.endswith(b"\n"):
            raise _MalformedBody("a chunk-size or trailer line is too long or cut short")
        return line

    def _chunk_size(self) -> int:
        size = self._line().split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size):
            raise _MalformedBody("a chunk size is not a hexadecimal number")
        return int(size, 16)

    def _end(self) -> None:
        for _ in range(self.max_trailers):
            if self._line() in (b"\r\n", b"\n"):
                self._ended = True
                return
        raise _MalformedBody("too many trailer lines")


# -- one request and its answer ----------------------------------------------------------------


class _ClientGone(Exception):
    """A write to the client failed: it stopped reading or went away."""


class _Exchange:
    """One request's run of the WSGI application, and its answer's framing (PEP 3333)."""

    def __init__(self, handler: _Handler, body: _Body, close: bool) -> None:
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


# -- the connection --------------------------------------------------------------------------


class _Handler(WSGIRequestHandler):
    """One connection, request after request: each head read within the read timeout and
    bounded in size, errors answered in JSON-RPC, request lines logged to ``taskstore.wsgi``
    (debug)."""

    protocol_version = "HTTP/1.1"
    #: Longest request line, line ending included (bytes); longer gets 414.
    max_request_line = 8192
    #: Largest header section (bytes); larger gets 431.
    max_header_bytes = 65536
    #: Largest unread rest of a request body the server reads and discards to keep the
    #: connection (bytes); a larger one closes it.
    max_drain_bytes = 65536

    server: ThreadingWSGIServer

    def setup(self) -> None:
        timeout = self.server.read_timeout_s
        self.connection = self.request
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            try:  # answers are written whole; a stream's chunks must not wait for ACKs
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._reader = _DeadlineReader(self.connection, time.monotonic() + timeout)
        self._buffered = io.BufferedReader(self._reader, 65536)
        self.rfile = self._buffered
        self.wfile = _TimedWriter(self.connection, timeout)
        self._linger = False

    def handle(self) -> None:
        """Serve requests until one ends the connection or the next does not come."""
        while self._handle_one() and self._await_next_request():
            pass

    def finish(self) -> None:
        """Close the connection (after a lingering read when input was left unread)."""
        if self._linger:
            self._lingering_close()
        super().finish()

    def _await_next_request(self) -> bool:
        """Wait, idle, for the next request's first byte (already there when pipelined);
        ``False``: the connection ends (idle timeout, the client closed, or the server needed
        the slot or is shutting down)."""
        self._reader.deadline = time.monotonic() + self.server.keepalive_timeout_s
        if not self.server.idle_begin(self.connection):
            return False
        try:
            arrived = self._buffered.peek(1)
        except OSError as exc:  # the idle timeout (TimeoutError) included
            _log.debug("idle connection from %s ends: %s", self.client_address[0], exc)
            arrived = b""
        finally:
            serve = self.server.idle_end(self.connection)
        if not (arrived and serve):
            return False
        self._reader.deadline = time.monotonic() + self.server.read_timeout_s
        return True

    def _handle_one(self) -> bool:
        """Read one request and answer it; whether the connection may carry another."""
        # Until parse_request fills them in, error answers and log lines need these.
        self.requestline, self.request_version, self.command = "", "HTTP/0.9", ""
        self.close_connection = True
        try:
            if not self._read_head():
                return False
            body = self._body()
        except TimeoutError:
            _log.debug("request from %s timed out before its body", self.client_address[0])
            self._answer_timeout()
            return False
        except OSError as exc:
            _log.debug("request from %s failed: %s", self.client_address[0], exc)
            return False
        if body is None:
            return False
        return self._run_app(body)

    def _read_head(self) -> bool:
        """Read and parse the request line and headers; ``False`` when answered already (or
        the client closed)."""
        line = self.rfile.readline(self.max_request_line + 1)
        if line in (b"\r\n", b"\n"):  # RFC 9112 §2.2: ignore an empty line before a request
            line = self.rfile.readline(self.max_request_line + 1)
        self.raw_requestline = line
        if len(line) > self.max_request_line:
            self.send_error(414, f"the request line exceeds {self.max_request_line} bytes")
            return False
        if not line:
            return False  # closed without a word
        if not self.parse_request():
            if not self.requestline:  # a blank line: http.server answers nothing
                self.send_error(400, "Bad request syntax ('')")
            return False
        tokens = {
            token.strip().lower()
            for value in self.headers.get_all("Connection", ())
            for token in value.split(",")
        }
        if "close" in tokens or self.request_version == "HTTP/0.9":
            self.close_connection = True
        else:
            self.close_connection = self.request_version < "HTTP/1.1" and "keep-alive" not in tokens
        return True

    def parse_request(self) -> bool:
        """``BaseHTTPRequestHandler.parse_request`` with the header section's size capped."""
        rfile = self.rfile
        self.rfile = _HeaderBudget(rfile, self.max_header_bytes)
        try:
            return super().parse_request()
        finally:
            self.rfile = rfile

    def _body(self) -> _Body | None:
        """The request body's reader; ``None`` when its framing was refused."""
        encodings = self.headers.get_all("Transfer-Encoding", ())
        lengths = self.headers.get_all("Content-Length", ())
        if encodings:
            if lengths:
                self.send_error(400, "Transfer-Encoding with Content-Length")
                return None
            if [e.strip().lower() for e in encodings] != ["chunked"]:
                self.send_error(501, "Transfer-Encoding other than chunked")
                return None
            return _ChunkedBody(self._buffered)
        values = {value.strip() for value in lengths}
        if len(values) > 1 or not all(_DIGITS.fullmatch(value) for value in values):
            self.send_error(400, "invalid Content-Length")
            return None
        return _LengthBody(self._buffered, int(values.pop()) if values else 0)

    def _environ(self, body: _Body) -> WSGIEnvironment:
        env = self.get_environ()
        env["wsgi.input"] = body
        env["wsgi.errors"] = sys.stderr
        env["wsgi.version"] = (1, 0)
        env["wsgi.url_scheme"] = "http"
        env["wsgi.multithread"] = True
        env["wsgi.multiprocess"] = False
        env["wsgi.run_once"] = False
        if isinstance(body, _ChunkedBody):
            env["wsgi.input_terminated"] = True
        return env

    def _run_app(self, body: _Body) -> bool:
        """Run the application on the request and send its answer; whether the connection
        may carry another request."""
        exchange = _Exchange(self, body, self.close_connection)
        app: WSGIApplication = self.server.get_app()  # type: ignore[assignment]
        result: Iterable[bytes] | None = None
        try:
            result = app(self._environ(body), exchange.start_response)
            if isinstance(result, (list, tuple)) and len(result) == 1:
                exchange.write(result[0], last=True)  # one chunk: its length is known
            else:
                for data in result:
                    exchange.write(data)
            exchange.finish()
        except _ClientGone as exc:
            _log.debug("response to %s cut short: %s", self.client_address[0], exc)
            return False
        except Exception:  # noqa: BLE001 - logged; a JSON-RPC 500 or a cut answer
            _log.error("error answering a request", exc_info=True)
            try:
                exchange.fail()
            except _ClientGone:
                return False
        finally:
            if result is not None:
                self._close_result(result, exchange)
        self.log_request(exchange.code, exchange.sent)
        keep = (
            exchange.complete
            and not exchange.close
            and body.drain(self.max_drain_bytes)
            and not self.server.closing
        )
        # Unread input would reset the connection at its close (not worth waiting for when
        # the client stalled).
        self._linger = not (keep or body.complete or body.stalled)
        return keep

    def _close_result(self, result: Iterable[bytes], exchange: _Exchange) -> None:
        close = getattr(result, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:  # noqa: BLE001 - logged; the connection ends
            _log.error("error closing a response", exc_info=True)
            exchange.close = True

    def _answer_timeout(self) -> None:
        try:
            self.send_error(408, "the request did not arrive in time")
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a request the server refuses before the app sees it (400, 408, 414, 431,
        501, 505) with a JSON-RPC error instead of ``http.server``'s HTML page, and end the
        connection."""
        reason = REASONS.get(code) or self.responses.get(code, ("Error",))[0]
        detail = explain or message  # http.server's explanations are the precise ones
        text = reason if not detail or detail == reason else f"{reason}: {detail}"
        body = _error_body(INVALID_REQUEST, text)
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        self._linger = code != 408  # a stalled client sends nothing more worth waiting for
        head = (
            f"HTTP/1.1 {code} {reason}\r\nDate: {_http_date()}\r\nConnection: close\r\n"
            f"Content-Type: {JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode("latin-1") + (b"" if self.command == "HEAD" else body))

    def _lingering_close(self) -> None:
        """Tell the client nothing more comes, then read (briefly, boundedly) what it still
        sends: closing with unread input resets the connection, which can destroy the last
        answer before the client reads it."""
        deadline = time.monotonic() + _LINGER_S
        budget = _LINGER_BYTES
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while budget > 0 and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                data = self.connection.recv(65536)
                if not data:
                    return
                budget -= len(data)
        except OSError:
            pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One debug line per answer on ``taskstore.wsgi``."""
        if _log.isEnabledFor(logging.DEBUG):
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Request lines and refusals go to the ``taskstore.wsgi`` logger (debug)."""
        _log.debug("%s - " + format, self.address_string(), *args)
