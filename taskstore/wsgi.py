"""The MCP endpoint for WSGI servers: the public names of :mod:`taskstore.http` (and of the
server scripts' command line, :mod:`taskstore.cli`), kept under this module.

    from taskstore.wsgi import McpWsgiApp, bearer_authenticator
    app = McpWsgiApp(server, authenticate=bearer_authenticator({"s3cret": "alice"}))

See :mod:`taskstore.http.app` for what the endpoint does.
"""

from __future__ import annotations

from taskstore.cli import run_cli, serve_main
from taskstore.http import (
    AuthenticationError,
    Authenticator,
    McpWsgiApp,
    ThreadingWSGIServer,
    ThreadingWSGIServerV6,
    bearer_authenticator,
    endpoint_url,
    is_loopback_host,
    make_wsgi_server,
    serve_forever,
)

__all__ = [
    "AuthenticationError",
    "Authenticator",
    "McpWsgiApp",
    "ThreadingWSGIServer",
    "ThreadingWSGIServerV6",
    "bearer_authenticator",
    "endpoint_url",
    "is_loopback_host",
    "make_wsgi_server",
    "run_cli",
    "serve_forever",
    "serve_main",
]
