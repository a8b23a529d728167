"""The bundled server's HTTP/1.1 connections: persistent, pipelining-safe, bounded in time
and size, answering every refusal in JSON-RPC.

This module is the listening server (:class:`ThreadingWSGIServer`): a thread per connection,
the connection cap and the idle connections. One thread serves one connection, request after
request (:class:`~taskstore.http._handler._Handler`), and runs the WSGI application for each
(:class:`~taskstore.http._exchange._Exchange`, a small PEP 3333 gateway) on a request body
framed by :mod:`taskstore.http._bodies`, its headers read by :mod:`taskstore.http._head`
(plain ones without the ``email`` package), over the socket wrappers of
:mod:`taskstore.http._wire`. How a connection stays correct for its next request:

- **Request bodies are framed exactly.** ``wsgi.input`` ends at ``Content-Length`` (or at
  the last chunk of a ``Transfer-Encoding: chunked`` body, de-chunked, with
  ``wsgi.input_terminated``); a ``Content-Length`` that is not one decimal number, or that
  comes with ``Transfer-Encoding``, gets 400 and the connection is closed. After the answer,
  an unread rest of the body up to
  :attr:`~taskstore.http._handler._Handler.max_drain_bytes` is read and discarded; a larger
  one closes the connection (the answer then says ``Connection: close``).
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

import logging
import socket
import sys
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIServer

from taskstore.http._exchange import _error_body
from taskstore.http.responses import SERVER_BUSY

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

_BUSY_BODY = _error_body(SERVER_BUSY, "Server busy: too many open connections; retry later")
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n" + _BUSY_BODY
)


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
