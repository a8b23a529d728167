"""A complete MCP endpoint over Streamable HTTP for any WSGI server, and ``serve``.

:class:`McpWsgiApp` wraps an :class:`~taskstore.mcp.server.McpServer` as a WSGI application
(stdlib ``wsgiref`` with threads, gunicorn with threads, waitress, ...)::

    from taskstore.wsgi import McpWsgiApp, bearer_authenticator
    app = McpWsgiApp(server, authenticate=bearer_authenticator({"s3cret": "alice"}))

What official MCP clients need (DESIGN §9), and what this endpoint does:

- ``POST`` one JSON-RPC message (``Content-Type: application/json``); requests are answered
  with ``application/json``; JSON-RPC errors travel with HTTP 200 (a non-2xx reads as a
  transport failure and loses the code); notifications and responses get 202 with no body.
  ``tasks/result`` of an unfinished task switches to ``text/event-stream`` when the client
  accepts it and the answer cannot come at once: the stream carries the task's input requests
  (``elicitation/create``) and keep-alive comments, then the response.
- ``initialize`` creates a session: the response carries ``Mcp-Session-Id``; every later
  request needs it (missing → 400, unknown or deleted → 404). ``DELETE`` ends the session.
- ``GET`` with a session opens its SSE stream of ``notifications/tasks/status`` (and progress);
  one stream per session (a second → 409); without a session → 400.
- Protocol versions ``2025-11-25``, ``2025-06-18``, ``2025-03-26``, ``2024-11-05``; an
  unsupported ``MCP-Protocol-Version`` header → 400.
- DNS-rebinding protection: a loopback server (``loopback_only``) accepts only loopback
  ``Host`` and ``Origin`` headers (any port), else 403; any server rejects an ``Origin`` that
  is neither its own nor allowed.
- ``authenticate(environ) -> AuthContext | None``: the subject (or client id) owns the tasks;
  unauthenticated sessions own theirs by session id.
- Malformed JSON → -32700; wrong shapes → -32600/-32602; unknown methods → -32601; bodies over
  ``max_body_bytes`` → 413; batch arrays → -32600. Nothing produces HTTP 500 or a traceback.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import queue
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import msgspec

from taskstore.errors import TaskStoreError
from taskstore.mcp.auth import AuthContext, Caller
from taskstore.mcp.capabilities import SUPPORTED_PROTOCOL_VERSIONS
from taskstore.mcp.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    JsonDict,
    ProtocolError,
    error_response,
    is_valid_id,
)
from taskstore.mcp.server import McpServer
from taskstore.mcp.sessions import CLOSE, Session, SessionManager
from taskstore.store import TaskStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "AuthenticationError",
    "Authenticator",
    "McpWsgiApp",
    "ThreadingWSGIServer",
    "bearer_authenticator",
    "is_loopback_host",
    "make_wsgi_server",
    "run_cli",
    "serve_forever",
    "serve_main",
]

_log = logging.getLogger("taskstore.wsgi")

_JSON = "application/json"
_SSE = "text/event-stream"
_SESSION_HEADER = "Mcp-Session-Id"
_encoder = msgspec.json.Encoder()


class AuthenticationError(Exception):
    """Raised by an authenticator to refuse a request (HTTP 401).

    :param message: safe to show the client.
    """

    def __init__(self, message: str = "Authentication required") -> None:
        super().__init__(message)
        self.message = message


class Authenticator(Protocol):
    """Identifies the caller of one HTTP request.

    Return an :class:`AuthContext` for an authenticated request, ``None`` for an anonymous
    one (allowed unless the app sets ``require_auth``), or raise
    :class:`AuthenticationError` to refuse it with 401.
    """

    def __call__(self, environ: WSGIEnvironment) -> AuthContext | None:
        """Authenticate the request described by ``environ``."""
        ...


def bearer_authenticator(
    tokens: Mapping[str, str | AuthContext], *, required: bool = True
) -> Authenticator:
    """An authenticator for static bearer tokens (``Authorization: Bearer <token>``).

    :param tokens: token → subject (or a full :class:`AuthContext`).
    :param required: refuse requests without a token (else they are anonymous).
    """
    contexts = {
        token: value if isinstance(value, AuthContext) else AuthContext(subject=value)
        for token, value in tokens.items()
    }

    def authenticate(environ: WSGIEnvironment) -> AuthContext | None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if not header:
            if required:
                raise AuthenticationError("A bearer token is required")
            return None
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Malformed Authorization header")
        presented = token.strip().encode("utf-8", "surrogateescape")
        found = None
        # Compare against every token in constant time: no early exit that would time-leak.
        for known, context in contexts.items():
            if hmac.compare_digest(presented, known.encode("utf-8")):
                found = context
        if found is None:
            raise AuthenticationError("Invalid bearer token")
        return found

    return authenticate


def is_loopback_host(host: str) -> bool:
    """``True`` for ``localhost``, ``127.0.0.0/8`` and ``::1`` (with or without brackets)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_of(value: str) -> str:
    """The host part of a ``Host`` header value (``name``, ``name:port``, ``[v6]:port``)."""
    value = value.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class _Response:
    """A status, headers and a body (bytes or a stream of chunks)."""

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


_REASONS = {
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


def _json(status: int, message: JsonDict, headers: Iterable[tuple[str, str]] = ()) -> _Response:
    return _Response(status, _encoder.encode(message), content_type=_JSON, headers=headers)


def _http_error(status: int, code: int, text: str, **kwargs: Any) -> _Response:
    # Transport-level refusals still carry a JSON-RPC error (without id), as the spec allows,
    # so every non-202 body a client sees is JSON-RPC.
    return _json(status, error_response(None, {"code": code, "message": text}), **kwargs)


def _sse_event(message: JsonDict) -> bytes:
    return b"event: message\ndata: " + _encoder.encode(message) + b"\n\n"


_KEEPALIVE = b": keepalive\n\n"


class McpWsgiApp:
    """The MCP endpoint as a WSGI application. Thread-safe; serve it with threads (a blocking
    ``tasks/result`` and each open GET stream hold one thread).

    :param server: the MCP server to expose.
    :param authenticate: identifies callers (see :class:`Authenticator`); ``None``: everyone
        is anonymous and sessions own their tasks.
    :param require_auth: refuse (401) requests the authenticator lets through anonymously.
    :param loopback_only: the server is bound to loopback: only loopback ``Host`` and
        ``Origin`` headers are accepted (DNS-rebinding protection).
    :param allowed_origins: further ``Origin`` values to accept (e.g. a web client's).
    :param path: the endpoint path (``None``: answer on any path).
    :param max_body_bytes: larger POST bodies get 413.
    :param keepalive_s: seconds of silence after which streams send a keep-alive comment (also
        how fast a vanished client is noticed; keep it below clients' read timeouts).
    :param session_idle_timeout_s: idle sessions expire after this long.
    :param max_sessions: live sessions kept at most.
    """

    def __init__(
        self,
        server: McpServer,
        *,
        authenticate: Authenticator | None = None,
        require_auth: bool = False,
        loopback_only: bool = False,
        allowed_origins: Iterable[str] = (),
        path: str | None = "/mcp",
        max_body_bytes: int = 4 * 1024 * 1024,
        keepalive_s: float = 15.0,
        session_idle_timeout_s: float = 3600.0,
        max_sessions: int = 10_000,
    ) -> None:
        self.server = server
        self.authenticate = authenticate
        self.require_auth = require_auth
        self.loopback_only = loopback_only
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.keepalive_s = keepalive_s
        self.sessions = SessionManager(
            idle_timeout_s=session_idle_timeout_s, max_sessions=max_sessions
        )

    def close(self) -> None:
        """End every session and stream (server shutdown)."""
        self.sessions.close()

    # -- WSGI ----------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self._dispatch(environ)
        except Exception:  # noqa: BLE001 - never an HTTP 500 or a traceback on the wire
            _log.exception("internal error handling %s", environ.get("REQUEST_METHOD"))
            response = _json(
                200, error_response(None, {"code": INTERNAL_ERROR, "message": "Internal error"})
            )
        start_response(f"{response.status} {_REASONS.get(response.status, '')}", response.headers)
        body = response.body
        return [body] if isinstance(body, bytes) else body

    def _dispatch(self, environ: WSGIEnvironment) -> _Response:
        if self.path is not None and environ.get("PATH_INFO", "") not in (
            self.path,
            self.path + "/",
        ):
            return _http_error(404, INVALID_REQUEST, "Not found: the MCP endpoint is " + self.path)
        refusal = self._check_host_and_origin(environ)
        if refusal is not None:
            return refusal
        method = environ.get("REQUEST_METHOD", "")
        if method == "POST":
            return self._post(environ)
        if method == "GET":
            return self._get(environ)
        if method == "DELETE":
            return self._delete(environ)
        return _http_error(
            405,
            INVALID_REQUEST,
            f"Method {method} not allowed",
            headers=[("Allow", "GET, POST, DELETE")],
        )

    # -- checks --------------------------------------------------------------------------

    def _check_host_and_origin(self, environ: WSGIEnvironment) -> _Response | None:
        host_header = environ.get("HTTP_HOST", "")
        if self.loopback_only and not is_loopback_host(_host_of(host_header)):
            return _http_error(403, INVALID_REQUEST, "Forbidden: Host must be a loopback name")
        origin = environ.get("HTTP_ORIGIN")
        if origin is None:
            return None
        normalized = origin.strip().rstrip("/").lower()
        if normalized in self.allowed_origins:
            return None
        parts = urlsplit(normalized)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return _http_error(403, INVALID_REQUEST, "Forbidden: invalid Origin")
        if self.loopback_only:
            if is_loopback_host(parts.hostname):
                return None
            return _http_error(403, INVALID_REQUEST, "Forbidden: Origin must be a loopback origin")
        if parts.netloc == host_header.strip().lower():
            return None  # same origin
        return _http_error(403, INVALID_REQUEST, "Forbidden: Origin not allowed")

    def _identify(self, environ: WSGIEnvironment) -> AuthContext | _Response | None:
        if self.authenticate is None:
            auth = None
        else:
            try:
                auth = self.authenticate(environ)
            except AuthenticationError as exc:
                return _http_error(
                    401, INVALID_REQUEST, exc.message, headers=[("WWW-Authenticate", "Bearer")]
                )
        if auth is None and self.require_auth:
            return _http_error(
                401,
                INVALID_REQUEST,
                "Authentication required",
                headers=[("WWW-Authenticate", "Bearer")],
            )
        return auth

    def _session(
        self, environ: WSGIEnvironment, auth: AuthContext | None
    ) -> tuple[Session, Caller] | _Response:
        session_id = environ.get("HTTP_MCP_SESSION_ID")
        if not session_id:
            return _http_error(400, INVALID_REQUEST, "Bad Request: Mcp-Session-Id header required")
        session = self.sessions.get(session_id)
        caller = Caller.resolve(auth=auth, session_id=session_id)
        # A session is bound to the identity that created it: another identity presenting its
        # id gets the same answer as for a session that does not exist.
        if session is None or caller.owner != session.caller.owner:
            return _http_error(404, INVALID_REQUEST, "Session not found")
        version = environ.get("HTTP_MCP_PROTOCOL_VERSION")
        if version is not None and version not in SUPPORTED_PROTOCOL_VERSIONS:
            return _http_error(
                400,
                INVALID_REQUEST,
                f"Bad Request: unsupported MCP-Protocol-Version {version!r}; supported: "
                + ", ".join(SUPPORTED_PROTOCOL_VERSIONS),
            )
        return session, caller

    def _read_body(self, environ: WSGIEnvironment) -> bytes | _Response:
        raw_length = environ.get("CONTENT_LENGTH") or ""
        stream = environ["wsgi.input"]
        if raw_length.strip():
            try:
                length = int(raw_length)
            except ValueError:
                return _http_error(400, INVALID_REQUEST, "Bad Request: invalid Content-Length")
            if length < 0:
                return _http_error(400, INVALID_REQUEST, "Bad Request: invalid Content-Length")
            if length > self.max_body_bytes:
                return _http_error(
                    413,
                    INVALID_REQUEST,
                    f"Request body too large (limit {self.max_body_bytes} bytes)",
                )
            body: bytes = stream.read(length) if length else b""
            return body
        if environ.get("wsgi.input_terminated"):
            # Chunked upload through a server that de-chunks (gunicorn, waitress).
            body = stream.read(self.max_body_bytes + 1)
            if len(body) > self.max_body_bytes:
                return _http_error(
                    413,
                    INVALID_REQUEST,
                    f"Request body too large (limit {self.max_body_bytes} bytes)",
                )
            return body
        return b""  # PEP 3333: without Content-Length, read nothing

    # -- POST ----------------------------------------------------------------------------

    def _post(self, environ: WSGIEnvironment) -> _Response:
        content_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        # Requiring JSON also stops browsers' CORS-free "simple" cross-site POSTs.
        if content_type != _JSON and not content_type.endswith("+json"):
            return _http_error(415, INVALID_REQUEST, "Content-Type must be application/json")
        body = self._read_body(environ)
        if isinstance(body, _Response):
            return body
        auth = self._identify(environ)
        if isinstance(auth, _Response):
            return auth
        try:
            message = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return _json(200, error_response(None, {"code": PARSE_ERROR, "message": "Parse error"}))
        if isinstance(message, list):
            # JSON-RPC batches left MCP in 2025-06-18; one clean error instead of a half answer.
            return _json(
                200,
                error_response(
                    None, {"code": INVALID_REQUEST, "message": "Batch requests are not supported"}
                ),
            )
        if not isinstance(message, dict):
            return _json(
                200, error_response(None, {"code": INVALID_REQUEST, "message": "Invalid Request"})
            )
        # MCP 2026-07-28 requests (params._meta protocolVersion, DESIGN §9c) will be told
        # apart here, before any session handling; everything today is the session era.
        if message.get("method") == "initialize" and "id" in message:
            return self._initialize(message, auth)
        found = self._session(environ, auth)
        if isinstance(found, _Response):
            return found
        session, caller = found
        if (
            message.get("method") == "tasks/result"
            and is_valid_id(message.get("id"))
            and _SSE in environ.get("HTTP_ACCEPT", "")
        ):
            return self._task_result(message, session, caller)
        reply = self.server.handle(message, caller=caller, sender=session.outbox)
        if reply is None:
            return _Response(202)
        return _json(200, reply)

    def _initialize(self, message: JsonDict, auth: AuthContext | None) -> _Response:
        session_id = SessionManager.new_id()
        caller = Caller.resolve(auth=auth, session_id=session_id)
        session = Session(id=session_id, caller=caller, protocol_version="")
        reply = self.server.handle(message, caller=caller, sender=session.outbox)
        if reply is None or "result" not in reply:
            return _json(200, reply or {})
        session.protocol_version = str(reply["result"].get("protocolVersion", ""))
        self.sessions.add(session)
        return _json(200, reply, headers=[(_SESSION_HEADER, session_id)])

    def _task_result(self, message: JsonDict, session: Session, caller: Caller) -> _Response:
        request_id = message["id"]
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            return _json(200, self.server.handle(message, caller=caller) or {})
        try:
            events = self.server.result_stream(
                params, caller, request_id, keepalive_s=self.keepalive_s
            )
            # Answer with plain JSON whenever the first thing to say is the answer itself;
            # switch to SSE only to push input requests or keep-alives before it.
            first = next(events)
        except (ProtocolError, TaskStoreError) as exc:
            return _json(200, error_response(request_id, exc.to_jsonrpc()))
        except Exception:  # noqa: BLE001 - never a traceback on the wire
            _log.exception("internal error in tasks/result")
            return _json(
                200,
                error_response(request_id, {"code": INTERNAL_ERROR, "message": "Internal error"}),
            )
        if first is not None and first.get("id") == request_id and "method" not in first:
            events.close()
            return _json(200, first)
        return _Response(
            200,
            self._sse_chain(first, events),
            content_type=_SSE,
            headers=[("Cache-Control", "no-cache")],
        )

    @staticmethod
    def _sse_chain(
        first: JsonDict | None, events: Generator[JsonDict | None, None, None]
    ) -> Iterator[bytes]:
        try:
            for message in _prepend(first, events):
                yield _KEEPALIVE if message is None else _sse_event(message)
        finally:
            # Runs when the client disconnects too (the WSGI server closes the iterable).
            events.close()

    # -- GET / DELETE --------------------------------------------------------------------

    def _get(self, environ: WSGIEnvironment) -> _Response:
        auth = self._identify(environ)
        if isinstance(auth, _Response):
            return auth
        found = self._session(environ, auth)
        if isinstance(found, _Response):
            return found
        session, _caller = found
        if _SSE not in environ.get("HTTP_ACCEPT", ""):
            return _http_error(
                406, INVALID_REQUEST, "Not Acceptable: GET needs Accept: text/event-stream"
            )
        stream = session.outbox.open_stream()
        if stream is None:
            return _http_error(
                409, INVALID_REQUEST, "Conflict: this session's stream is already open"
            )
        detach = self.server.notifier.attach(session.caller.owner, session.outbox)
        return _Response(
            200,
            self._notification_stream(session, stream, detach),
            content_type=_SSE,
            headers=[("Cache-Control", "no-cache")],
        )

    def _notification_stream(
        self,
        session: Session,
        stream: queue.Queue[JsonDict],
        detach: Callable[[], None],
    ) -> Iterator[bytes]:
        try:
            # Something at once, so servers send the headers and the client sees the stream.
            yield b": stream open\n\n"
            while True:
                try:
                    message = stream.get(timeout=self.keepalive_s)
                except queue.Empty:
                    session.touch()
                    yield _KEEPALIVE
                    continue
                if message is CLOSE:
                    return
                yield _sse_event(message)
        finally:
            detach()
            session.outbox.close_stream(stream)

    def _delete(self, environ: WSGIEnvironment) -> _Response:
        auth = self._identify(environ)
        if isinstance(auth, _Response):
            return auth
        found = self._session(environ, auth)
        if isinstance(found, _Response):
            return found
        session, _caller = found
        self.sessions.remove(session.id)
        return _Response(200)


def _prepend(first: JsonDict | None, rest: Iterator[JsonDict | None]) -> Iterator[JsonDict | None]:
    yield first
    yield from rest


# -- serving ---------------------------------------------------------------------------------


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


def serve_forever(server: McpServer, host: str = "127.0.0.1", port: int = 8000) -> int:
    """Serve ``server`` over threaded HTTP until Ctrl-C or SIGTERM, then close it and its store.

    Prints (and flushes) exactly one line on stdout once listening: the endpoint URL
    ``http://HOST:PORT/mcp``. Returns the exit status: 0 after a clean shutdown, 1 when the
    address cannot be bound.
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
    print(endpoint_url(host, httpd.server_port), flush=True)
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


def run_cli(
    build: Callable[[TaskStore], McpServer],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    description: str | None = None,
) -> int:
    """Command line of an MCP server script: ``[--store URL] [--host] [--port]``, like
    ``python -m taskstore serve``. Opens the store, builds the server with ``build(store)`` and
    runs :func:`serve_forever`. Returns the exit status (2 for a bad store URL).
    """
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--store", default="memory://", help="storage URL (default memory://)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    return serve_main(args.store, args.host, args.port, build=build)


def serve_main(
    store_url: str = "memory://",
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    build: Callable[[TaskStore], McpServer] | None = None,
) -> int:
    """``python -m taskstore serve``: an MCP server with demo tools until Ctrl-C or SIGTERM.

    Prints (and flushes) exactly one line on stdout once listening: the endpoint URL
    ``http://HOST:PORT/mcp``. Returns the exit status: 0 after a clean shutdown, 1 when the
    address cannot be bound, 2 for a bad store URL.

    :param build: makes the server from the opened store (default: the demo tools).
    """
    import taskstore
    from taskstore.errors import ConfigurationError

    try:
        store = taskstore.open(store_url)
    except ConfigurationError as exc:
        print(f"taskstore serve: {exc}", file=sys.stderr)
        return 2
    return serve_forever((build or _demo_server)(store), host, port)


def _demo_server(store: TaskStore) -> McpServer:
    from taskstore.mcp.demo import register_demo_tools

    server = McpServer(
        store,
        name="taskstore-demo",
        instructions="Demo tools of taskstore: call long_job as a task and poll it.",
    )
    register_demo_tools(server)
    return server
