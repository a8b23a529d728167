"""Streamable HTTP for WSGI servers: the MCP endpoint (:class:`McpWsgiApp`), authentication,
and the bundled threaded server (:func:`serve_forever`).

``taskstore.wsgi`` re-exports these names (and the server scripts' command line from
:mod:`taskstore.cli`) under their original module.
"""

from __future__ import annotations

from taskstore.errors import AuthenticationError
from taskstore.http.app import McpWsgiApp
from taskstore.http.auth import Authenticator, OriginPolicy, bearer_authenticator, is_loopback_host
from taskstore.http.limits import MAX_JSON_DEPTH
from taskstore.http.responses import SERVER_BUSY
from taskstore.http.serve import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_READ_TIMEOUT_S,
    ThreadingWSGIServer,
    ThreadingWSGIServerV6,
    endpoint_url,
    make_wsgi_server,
    serve_forever,
)

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT_S",
    "MAX_JSON_DEPTH",
    "SERVER_BUSY",
    "AuthenticationError",
    "Authenticator",
    "McpWsgiApp",
    "OriginPolicy",
    "ThreadingWSGIServer",
    "ThreadingWSGIServerV6",
    "bearer_authenticator",
    "endpoint_url",
    "is_loopback_host",
    "make_wsgi_server",
    "serve_forever",
]
