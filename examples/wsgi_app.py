"""A web application that mounts the MCP endpoint beside its own routes (plain WSGI).

Routes of ``app``:

- ``/``: the application's own page (plain text); ``/api/hello?name=Ada``: its own JSON API.
- ``/mcp``: the MCP endpoint (:class:`taskstore.wsgi.McpWsgiApp`), for MCP 2025-11-25
  sessions and stateless MCP 2026-07-28 clients (tasks extension), serving the demo tools of
  ``python -m taskstore serve`` (``long_job``, ``word_count``, ``confirm_action``) and this
  application's ``hello``, which shares its code with ``/api/hello``.
- ``/healthz``: the endpoint's health check (200 while the store answers, else 503).

Serve it with gunicorn's threaded workers, from the checkout's root::

    TASKSTORE_URL=sqlite:///tasks.db gunicorn 'examples.wsgi_app:app' -w 4 --threads 8

(or ``gunicorn --chdir examples 'wsgi_app:app' ...``). ``$TASKSTORE_URL`` names the store
(default ``sqlite:///tasks.db``, relative to the working directory).

- **Several workers need a store outside the process** (``sqlite:///`` on one host,
  ``postgresql://``, ``redis://``): every worker opens the same URL, so each sees the tasks the
  others created and derives the same keys from it, and a client's session and tasks are
  served by whichever worker answers. ``memory://`` is one process's dictionary: with ``-w 2``
  a task created on one worker is "not found" on the other, and so is the session (use it only
  with ``-w 1``).
- **Give workers threads** (``--threads``): a blocking ``tasks/result`` and each open
  notification stream hold one.
- **Stopping** (SIGTERM): gunicorn waits up to ``--graceful-timeout`` for open requests,
  notification streams included; the stream of a client that left ends at its second
  keep-alive comment (``$MCP_KEEPALIVE_S``, default 15 s).
- **Don't** ``--preload``: the store (its connections) and the server's tool threads are made
  when a worker imports this module; made in the master before ``fork()``, the workers would
  share the connections and have none of the threads.
"""

from __future__ import annotations

import atexit
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import taskstore
from taskstore.mcp import McpServer, ToolContext
from taskstore.mcp.demo import register_demo_tools
from taskstore.wsgi import McpWsgiApp

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Like `taskstore serve`, let unauthenticated MCP 2026-07-28 callers create tasks (the
# unguessable task id is the capability); pass McpWsgiApp(authenticate=...) to tie tasks to users.
store = taskstore.open(os.environ.get("TASKSTORE_URL", "sqlite:///tasks.db"), allow_anonymous=True)
server = McpServer(
    store,
    name="wsgi-app-example",
    instructions="Call long_job as a task and poll it; hello greets.",
    stale_after_ms=60_000,  # fail the tasks of a worker that died mid-call
)
register_demo_tools(server)
# Keep-alive comments on notification streams every MCP_KEEPALIVE_S seconds (keep it below
# your proxy's read timeout); a stream whose client vanished ends at the second one.
keepalive_s = float(os.environ.get("MCP_KEEPALIVE_S", "15"))
mcp = McpWsgiApp(server, path="/mcp", health_path="/healthz", keepalive_s=keepalive_s)


def greeting(name: str) -> dict[str, str]:
    """What both ``/api/hello`` and the ``hello`` tool answer."""
    return {"message": f"Hello, {name}!", "worker": str(os.getpid())}


@server.tool(
    "hello",
    task_support="optional",
    description="Greet someone, as GET /api/hello does.",
    input_schema={"type": "object", "properties": {"name": {"type": "string"}}},
)
def hello(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, str]:
    """The application's own tool."""
    return greeting(str(arguments.get("name", "world")))


def home(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``GET /``: a page of the application itself."""
    body = b"An application with an MCP endpoint at /mcp. Try /api/hello?name=Ada.\n"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body]


def api_hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """``GET /api/hello?name=...``: the application's JSON API."""
    name = parse_qs(environ.get("QUERY_STRING", "")).get("name", ["world"])[0]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(greeting(name)).encode()]


def not_found(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Any other path."""
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"Not found\n"]


ROUTES: dict[str, WSGIApplication] = {
    "/": home,
    "/api/hello": api_hello,
    "/mcp": mcp,
    "/mcp/": mcp,
    "/healthz": mcp,
}


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI application: dispatch on the path."""
    route = ROUTES.get(environ.get("PATH_INFO") or "/", not_found)
    return route(environ, start_response)


@atexit.register
def _close() -> None:
    # A worker exiting: end the sessions' streams and running tools, then the store.
    mcp.close()
    server.close()
    store.close()
