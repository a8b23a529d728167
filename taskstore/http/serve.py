"""The bundled HTTP server: a threaded ``wsgiref`` server for :class:`McpWsgiApp`, and
:func:`serve_forever`, which runs one until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from taskstore.http.app import McpWsgiApp
from taskstore.http.auth import is_loopback_host
from taskstore.mcp.server import McpServer

__all__ = [
    "ThreadingWSGIServer",
    "ThreadingWSGIServerV6",
    "endpoint_url",
    "make_wsgi_server",
    "serve_forever",
]

_log = logging.getLogger("taskstore.wsgi")


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """``wsgiref``'s server with a thread per request, so a blocking ``tasks/result`` or an
    open stream never stalls other requests."""

    daemon_threads = True
    # 8+ concurrent clients connecting at once overflow the default backlog of 5.
    request_queue_size = 128
    allow_reuse_address = True


class ThreadingWSGIServerV6(ThreadingWSGIServer):
    """:class:`ThreadingWSGIServer` on IPv6."""

    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the ``taskstore.wsgi`` logger (debug), not to stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        _log.debug("%s - " + format, self.address_string(), *args)


def make_wsgi_server(app: McpWsgiApp, host: str = "127.0.0.1", port: int = 8000) -> WSGIServer:
    """A threaded ``wsgiref`` server for ``app`` bound to ``host:port`` (``port=0``: any free
    port; read it from ``server.server_port``). Call ``serve_forever()`` to run it."""
    server_class = ThreadingWSGIServerV6 if ":" in host else ThreadingWSGIServer
    return make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)


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
) -> int:
    """Serve ``server`` over threaded HTTP until Ctrl-C or SIGTERM, then close it and its store.

    Prints (and flushes) exactly one line on stdout once listening: the endpoint URL
    ``http://HOST:PORT/mcp``; then ``banner(url)``, if given, on stderr. Returns the exit
    status: 0 after a clean shutdown, 1 when the address cannot be bound.
    """
    app = McpWsgiApp(server, loopback_only=is_loopback_host(host))
    try:
        httpd = make_wsgi_server(app, host, port)
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
