"""The bundled HTTP server: a threaded ``wsgiref`` server for :class:`McpWsgiApp`, and
:func:`serve_forever`, which runs one until Ctrl-C or SIGTERM.

Hardened against hostile clients, within what ``wsgiref`` allows (one request per connection,
HTTP/1.0 replies):

- **Read timeout.** A connection must deliver its whole request (line, headers and body)
  within ``read_timeout_s`` (default 60 s) of being accepted, whether it stalls or trickles;
  otherwise it gets 408 and is closed. Each write must also progress within that time.
- **Connection cap.** At most ``max_connections`` (default 512) connections are served at
  once; beyond that a connection is answered 503 with ``Retry-After`` and closed at once.
- **Bounded request head.** A request line over 8 KiB gets 414, a header section over 64 KiB
  (or a header line over 64 KiB, or more than 100 headers) gets 431.
- Every error answer, these included, is a JSON-RPC error with ``Content-Type:
  application/json``. Failures are logged through the ``taskstore.wsgi`` logger (never a
  traceback printed to stderr); reaching the connection cap is a warning.

Everything server-specific lives in this module (the app knows nothing of it), so another
WSGI server can replace it.
"""

from __future__ import annotations

import http.client
import io
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import IO, Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

import msgspec

from taskstore.errors import INTERNAL_ERROR, INVALID_REQUEST
from taskstore.http.app import McpWsgiApp
from taskstore.http.auth import is_loopback_host
from taskstore.http.responses import JSON, REASONS, SERVER_BUSY
from taskstore.mcp.jsonrpc import error_response
from taskstore.mcp.server import McpServer

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT_S",
    "ThreadingWSGIServer",
    "ThreadingWSGIServerV6",
    "endpoint_url",
    "make_wsgi_server",
    "serve_forever",
]

_log = logging.getLogger("taskstore.wsgi")

#: Seconds a connection has to deliver its whole request (and each write to progress).
DEFAULT_READ_TIMEOUT_S = 60.0
#: Connections served at once; keep it below the open-file limit (``ulimit -n``, often 1024).
DEFAULT_MAX_CONNECTIONS = 512

_encoder = msgspec.json.Encoder()


def _error_body(code: int, message: str) -> bytes:
    return _encoder.encode(error_response(None, {"code": code, "message": message}))


_BUSY_BODY = _error_body(SERVER_BUSY, "Server busy: too many open connections; retry later")
_BUSY_RESPONSE = (
    b"HTTP/1.0 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n" + _BUSY_BODY
)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """``wsgiref``'s server with a thread per connection (so a blocking ``tasks/result`` or
    an open stream never stalls other requests), a connection cap and a read timeout.

    :ivar read_timeout_s: seconds a connection has to deliver its whole request; also the
        timeout of each write.
    :ivar max_connections: connections served at once; more are answered 503 and closed.
    """

    daemon_threads = True
    # 8+ concurrent clients connecting at once overflow the default backlog of 5.
    request_queue_size = 128
    allow_reuse_address = True
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open = 0
        self._open_lock = threading.Lock()
        self._warned_at: float | None = None
        super().__init__(*args, **kwargs)

    @property
    def open_connections(self) -> int:
        """Connections being served now."""
        with self._open_lock:
            return self._open

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread, or refuse it with 503 when at the cap."""
        with self._open_lock:
            admitted = self._open < self.max_connections
            if admitted:
                self._open += 1
        if not admitted:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # the thread did not start: its slot is free again
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection (in its own thread), then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failure that escaped the handler (never print it to stderr)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            _log.debug("connection from %s failed: %s", client_address, exc)
        else:
            _log.error("error serving %s", client_address, exc_info=True)

    def _release(self) -> None:
        with self._open_lock:
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


class _DeadlineReader(io.RawIOBase):
    """Reads a socket until a deadline: each receive may wait only for the time left, so a
    client that trickles bytes cannot hold the connection longer than a stalled one."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
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


class _ServerHandler(ServerHandler):
    """``wsgiref``'s per-request handler, logging through ``taskstore.wsgi`` and answering
    JSON-RPC should the app ever fail before responding."""

    error_status = "500 Internal Server Error"
    error_headers = [("Content-Type", JSON)]  # noqa: RUF012 - wsgiref's attribute
    error_body = _error_body(INTERNAL_ERROR, "Internal error")

    def log_exception(
        self,
        exc_info: tuple[type[BaseException], BaseException, TracebackType]
        | tuple[None, None, None],
    ) -> None:
        exc = exc_info[1]
        if isinstance(exc, OSError):  # the client stopped reading or went away
            _log.debug("response cut short: %s", exc)
        else:
            _log.error("error answering a request", exc_info=exc_info)


class _Handler(WSGIRequestHandler):
    """One connection: the request head read within the server's deadline and bounded in
    size, errors answered in JSON-RPC, request lines logged to ``taskstore.wsgi`` (debug)."""

    #: Longest request line, line ending included (bytes); longer gets 414.
    max_request_line = 8192
    #: Largest header section (bytes); larger gets 431.
    max_header_bytes = 65536

    server: ThreadingWSGIServer

    def setup(self) -> None:
        timeout = self.server.read_timeout_s
        self.connection = self.request
        self.rfile = io.BufferedReader(
            _DeadlineReader(self.connection, time.monotonic() + timeout)
        )
        self.wfile = _TimedWriter(self.connection, timeout)

    def handle(self) -> None:
        # Until parse_request fills them in, error answers and log lines need these.
        self.requestline, self.request_version, self.command = "", "", ""
        try:
            if not self._read_head():
                return
        except TimeoutError:
            _log.debug("request from %s timed out before its body", self.client_address[0])
            self._answer_timeout()
            return
        except OSError as exc:
            _log.debug("request from %s failed: %s", self.client_address[0], exc)
            return
        handler = _ServerHandler(
            cast("IO[bytes]", self.rfile),
            cast("IO[bytes]", self.wfile),
            self.get_stderr(),
            self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref's back-pointer
        handler.run(self.server.get_app())  # type: ignore[arg-type]

    def _read_head(self) -> bool:
        """Read and parse the request line and headers; ``False`` when answered already."""
        self.raw_requestline = self.rfile.readline(self.max_request_line + 1)
        if len(self.raw_requestline) > self.max_request_line:
            self.send_error(414, f"the request line exceeds {self.max_request_line} bytes")
            return False
        if not self.raw_requestline:
            return False  # connected and closed without a word
        return self.parse_request()

    def parse_request(self) -> bool:
        """``BaseHTTPRequestHandler.parse_request`` with the header section's size capped."""
        rfile = self.rfile
        self.rfile = _HeaderBudget(rfile, self.max_header_bytes)
        try:
            return super().parse_request()
        finally:
            self.rfile = rfile

    def _answer_timeout(self) -> None:
        try:
            self.send_error(408, "the request did not arrive in time")
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a request the server refuses before the app sees it (400, 408, 414, 431,
        505) with a JSON-RPC error instead of ``http.server``'s HTML page."""
        reason = REASONS.get(code) or self.responses.get(code, ("Error",))[0]
        detail = explain or message  # http.server's explanations are the precise ones
        text = reason if not detail or detail == reason else f"{reason}: {detail}"
        body = _error_body(INVALID_REQUEST, text)
        if self.request_version == "HTTP/0.9":
            # Only a well-formed HTTP/0.9 request goes without a status line, and those never
            # get here; a garbled one still gets status and headers.
            self.request_version = "HTTP/1.0"
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, reason)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Request lines and refusals go to the ``taskstore.wsgi`` logger (debug)."""
        _log.debug("%s - " + format, self.address_string(), *args)


def make_wsgi_server(
    app: McpWsgiApp,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> ThreadingWSGIServer:
    """A threaded ``wsgiref`` server for ``app`` bound to ``host:port`` (``port=0``: any free
    port; read it from ``server.server_port``). Call ``serve_forever()`` to run it.

    :param read_timeout_s: seconds a connection has to deliver its whole request (else 408
        and closed); also each write's timeout.
    :param max_connections: connections served at once; more get 503 with ``Retry-After``.
    :raises ValueError: a limit that is not positive.
    """
    if not read_timeout_s > 0:
        raise ValueError("read_timeout_s must be positive")
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    server_class = ThreadingWSGIServerV6 if ":" in host else ThreadingWSGIServer
    httpd = make_server(host, port, app, server_class=server_class, handler_class=_Handler)
    assert isinstance(httpd, ThreadingWSGIServer)
    httpd.read_timeout_s = read_timeout_s
    httpd.max_connections = max_connections
    return httpd


def endpoint_url(host: str, port: int, path: str = "/mcp") -> str:
    """``http://HOST:PORT/mcp`` (IPv6 hosts in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def serve_forever(
    server: McpServer,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    banner: Callable[[str], str] | None = None,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> int:
    """Serve ``server`` over threaded HTTP until Ctrl-C or SIGTERM, then close it and its store.

    Prints (and flushes) exactly one line on stdout once listening: the endpoint URL
    ``http://HOST:PORT/mcp``; then ``banner(url)``, if given, on stderr. Returns the exit
    status: 0 after a clean shutdown, 1 when the address cannot be bound.

    :param read_timeout_s: see :func:`make_wsgi_server`.
    :param max_connections: see :func:`make_wsgi_server`.
    """
    app = McpWsgiApp(server, loopback_only=is_loopback_host(host))
    try:
        httpd = make_wsgi_server(
            app, host, port, read_timeout_s=read_timeout_s, max_connections=max_connections
        )
    except OSError as exc:
        print(f"taskstore serve: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        server.close()
        server.store.close()
        return 1
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=httpd.serve_forever, name="taskstore-serve", daemon=True)
    thread.start()
    url = endpoint_url(host, httpd.server_port)
    print(url, flush=True)
    if banner is not None:
        print(banner(url), file=sys.stderr, flush=True)
    try:
        # Short waits keep the main thread responsive to signals on every platform.
        while not stop.wait(0.2):
            pass
    finally:
        httpd.shutdown()
        app.close()
        server.close()
        httpd.server_close()
        server.store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
