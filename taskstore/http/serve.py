"""The bundled HTTP server: a threaded HTTP/1.1 server for :class:`McpWsgiApp` with
persistent connections, and :func:`serve_forever`, which runs one until Ctrl-C or SIGTERM.

Hardened against hostile clients:

- **Keep-alive.** Connections persist across requests (HTTP/1.1, or HTTP/1.0 with
  ``Connection: keep-alive``) and pipelined requests are answered in order; bodies are framed
  exactly both ways (``Content-Length``; SSE streams ``Transfer-Encoding: chunked``), so a
  stream, an error answer or a body the app did not read never desynchronizes the next
  request. ``Connection: close`` is honoured. Between requests a connection may stay idle for
  ``keepalive_timeout_s`` (default 15 s), then it is closed without an answer.
- **Read timeout.** A request must arrive whole (line, headers and body) within
  ``read_timeout_s`` (default 60 s): of the connection being accepted for its first request,
  of its first byte for later ones; whether it stalls or trickles, it otherwise gets 408 and
  the connection is closed. Each write must also progress within that time.
- **Connection cap.** At most ``max_connections`` (default 512) connections are open at
  once, idle kept-alive ones included. While all are taken, answers end their connection
  (``Connection: close``); a connection arriving at the cap takes the place of the one idle
  the longest if that one has been idle for a second, else it is answered 503 with
  ``Retry-After: 1`` and closed at once.
- **Bounded request head.** A request line over 8 KiB gets 414, a header section over 64 KiB
  (or a header line over 64 KiB, or more than 100 headers) gets 431.
- Every error answer, these included, is a JSON-RPC error with ``Content-Type:
  application/json``. Failures are logged through the ``taskstore.wsgi`` logger (never a
  traceback printed to stderr; a client that leaves mid-answer is a debug line); reaching
  the connection cap (a 503) is a warning.

Why a server of its own rather than waitress, cheroot or gunicorn (compared on this
workload and these limits; the connection handling is in :mod:`taskstore.http._server`):

- **waitress 3.0** answers refusals in ``text/plain`` and bounds the request line only
  with the headers (431, no 414); a stalled request is dropped silently after
  ``channel_timeout`` (no 408) and one trickling a byte at a time never is; at
  ``connection_limit`` it stops accepting (clients wait in the backlog; no 503). Its fixed
  pool of ``threads`` (4) is held by every blocking ``tasks/result`` and open SSE stream, so
  a few streams stall every other client.
- **cheroot 11** answers in ``text/plain`` (a large header section is a 413), its timeout is
  per socket operation (a trickling client is never timed out), and beyond a bounded queue a
  connection gets 503 with an empty ``text/plain`` body; streams hold threads of a fixed
  pool.
- **gunicorn 27's gthread worker** parks idle kept-alive connections in a poller (they cost
  no thread) and caps connections, but at the cap it stops accepting (no 503), answers 414
  and 431 with HTML pages, drops a silent connection without a 408, has no whole-request
  deadline, needs ``fork`` (no Windows) and runs as a process manager, not as a server
  embedded in ``serve_forever`` that prints its real port.

Each would need its private internals patched for the JSON-RPC answers and limits above, and
would add a dependency (``import taskstore`` needs only msgspec). This server is
``http.server``'s request parsing (``protocol_version = "HTTP/1.1"``) with a small PEP 3333
gateway of its own; a thread per connection keeps streams and blocking calls from stalling
anyone else. :class:`McpWsgiApp` knows nothing of it: under gunicorn (``--threads``, whose
``--keep-alive`` is on by default) or waitress it keeps its connections alive as well.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from wsgiref.simple_server import make_server

from taskstore.http._handler import _Handler
from taskstore.http._server import (
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_READ_TIMEOUT_S,
    ThreadingWSGIServer,
    ThreadingWSGIServerV6,
)
from taskstore.http.app import McpWsgiApp
from taskstore.http.auth import is_loopback_host
from taskstore.mcp.server import McpServer

__all__ = [
    "DEFAULT_KEEPALIVE_TIMEOUT_S",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT_S",
    "ThreadingWSGIServer",
    "ThreadingWSGIServerV6",
    "endpoint_url",
    "make_wsgi_server",
    "serve_forever",
]


def make_wsgi_server(
    app: McpWsgiApp,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S,
) -> ThreadingWSGIServer:
    """A threaded HTTP/1.1 server for ``app`` bound to ``host:port`` (``port=0``: any free
    port; read it from ``server.server_port``). Call ``serve_forever()`` to run it.

    :param read_timeout_s: seconds a request has to arrive whole (else 408 and the
        connection is closed): from the connection's acceptance for its first request, from
        its first byte for later ones; also each write's timeout.
    :param max_connections: connections open at once, idle kept-alive ones included; while
        all are taken answers end their connection, and a new connection replaces the one
        idle the longest (if idle for ``server.replace_idle_after_s``, 1 s), else gets 503
        with ``Retry-After``.
    :param keepalive_timeout_s: seconds a connection may stay idle between requests.
    :raises ValueError: a limit that is not positive.
    """
    if not read_timeout_s > 0:
        raise ValueError("read_timeout_s must be positive")
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    if not keepalive_timeout_s > 0:
        raise ValueError("keepalive_timeout_s must be positive")
    server_class = ThreadingWSGIServerV6 if ":" in host else ThreadingWSGIServer
    httpd = make_server(host, port, app, server_class=server_class, handler_class=_Handler)
    assert isinstance(httpd, ThreadingWSGIServer)
    httpd.read_timeout_s = read_timeout_s
    httpd.max_connections = max_connections
    httpd.keepalive_timeout_s = keepalive_timeout_s
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
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S,
) -> int:
    """Serve ``server`` over threaded HTTP/1.1 until Ctrl-C or SIGTERM, then close it and its
    store.

    Prints (and flushes) exactly one line on stdout once listening: the endpoint URL
    ``http://HOST:PORT/mcp``; then ``banner(url)``, if given, on stderr. Returns the exit
    status: 0 after a clean shutdown, 1 when the address cannot be bound.

    :param read_timeout_s: see :func:`make_wsgi_server`.
    :param max_connections: see :func:`make_wsgi_server`.
    :param keepalive_timeout_s: see :func:`make_wsgi_server`.
    """
    app = McpWsgiApp(server, loopback_only=is_loopback_host(host))
    try:
        httpd = make_wsgi_server(
            app,
            host,
            port,
            read_timeout_s=read_timeout_s,
            max_connections=max_connections,
            keepalive_timeout_s=keepalive_timeout_s,
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
