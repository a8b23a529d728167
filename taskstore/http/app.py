"""``McpWsgiApp``: a complete MCP endpoint over Streamable HTTP for any WSGI server.

:class:`McpWsgiApp` wraps an :class:`~taskstore.mcp.server.McpServer` as a WSGI application
(stdlib ``wsgiref`` with threads, gunicorn with threads, waitress, ...)::

    from taskstore.http import McpWsgiApp, bearer_authenticator
    app = McpWsgiApp(server, authenticate=bearer_authenticator({"s3cret": "alice"}))

What official MCP clients need (DESIGN §9), and what this endpoint does:

- ``POST`` one JSON-RPC message (``Content-Type: application/json``; an ``Accept`` header,
  when present, must admit ``application/json`` or ``text/event-stream``, else 406); requests
  are answered with ``application/json``; JSON-RPC errors travel with HTTP 200 (a non-2xx
  reads as a transport failure and loses the code); notifications and responses get 202 with
  no body. ``tasks/result`` of an unfinished task switches to ``text/event-stream`` when the
  client's ``Accept`` names it and the answer cannot come at once: the stream carries the
  task's input requests (``elicitation/create``) and keep-alive comments, then the response.
- ``initialize`` creates a session: the response carries ``Mcp-Session-Id``; every later
  request needs it (missing → 400, unknown or deleted → 404). ``DELETE`` ends the session.
  When the session table is full, an idle session is evicted to make room, never one whose
  unfinished tasks would become unreachable (:class:`~taskstore.mcp.sessions.SessionManager`);
  when none may go, ``initialize`` gets HTTP 503 with ``Retry-After`` and a JSON-RPC error
  (code -32000).
- ``GET /healthz`` (``health_path``) answers 200 ``{"status": "ok"}`` when the store answers
  a cheap probe within ``health_timeout_s``, else 503 ``{"status": "unavailable"}``; it needs
  no session, ignores the Origin rule below and never describes the configuration.
- ``GET`` with a session opens its SSE stream of ``notifications/tasks/status`` (and progress);
  one stream per session (a second → 409); without a session → 400.
- Protocol versions ``2025-11-25``, ``2025-06-18``, ``2025-03-26``, ``2024-11-05``; an
  unsupported ``MCP-Protocol-Version`` header → 400.
- DNS-rebinding protection: a loopback server (``loopback_only``) accepts only loopback
  ``Host`` and ``Origin`` headers (any port), else 403; any server rejects an ``Origin`` that
  is neither its own nor allowed.
- ``authenticate(environ) -> AuthContext | None``: the subject (or client id) owns the tasks;
  unauthenticated sessions own theirs by session id.
- Malformed JSON, or JSON nested deeper than ``max_json_depth`` (512) levels → -32700; wrong
  shapes → -32600/-32602; unknown methods → -32601; bodies over ``max_body_bytes`` → 413; a
  body that stops arriving (the server's read timeout) → 408; batch arrays → -32600. Nothing
  produces HTTP 500 or a traceback.

The app resolves each request once (its era with :func:`taskstore.mcp.era.era_of`, its caller
from authentication and session) into a :class:`~taskstore.mcp.request.RequestContext`, hands
the message to :meth:`McpServer.handle <taskstore.mcp.server.McpServer.handle>`, and only
chooses JSON or SSE for the reply.
"""

from __future__ import annotations

import functools
import logging
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from taskstore import telemetry
from taskstore.aliases import JsonDict
from taskstore.errors import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, AuthenticationError
from taskstore.http.accept import Accept
from taskstore.http.auth import Authenticator, OriginPolicy
from taskstore.http.health import DEFAULT_HEALTH_TIMEOUT_S, HealthCheck
from taskstore.http.limits import MAX_JSON_DEPTH, json_depth_exceeds
from taskstore.http.responses import (
    JSON,
    KEEPALIVE,
    SSE,
    Response,
    busy_error,
    http_error,
    json_response,
    sse_event,
    sse_stream,
)
from taskstore.mcp.auth import AuthContext, Caller
from taskstore.mcp.capabilities import SUPPORTED_PROTOCOL_VERSIONS
from taskstore.mcp.era import ERA_2025_11_25, Era, era_of
from taskstore.mcp.jsonrpc import error_response
from taskstore.mcp.request import RequestContext
from taskstore.mcp.server import McpServer
from taskstore.mcp.sessions import CLOSE, Session, SessionManager, SessionTableFull

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["McpWsgiApp"]

_log = logging.getLogger("taskstore.wsgi")

_SESSION_HEADER = "Mcp-Session-Id"
_BEARER = [("WWW-Authenticate", "Bearer")]
#: Methods that never create a task. Any other request of an unauthenticated session makes it
#: a task holder, which admission evicts only after asking the store (new methods stay safe).
_TASK_FREE_METHODS = frozenset(
    {
        "ping",
        "tools/list",
        "prompts/list",
        "tasks/get",
        "tasks/list",
        "tasks/result",
        "tasks/cancel",
    }
)


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
    :param max_json_depth: POST bodies nesting arrays and objects deeper than this get a parse
        error (-32700); at most about 900 on Python < 3.12, whose decoder shares the
        interpreter's recursion limit.
    :param keepalive_s: seconds of silence after which streams send a keep-alive comment (also
        how fast a vanished client is noticed; keep it below clients' read timeouts).
    :param session_idle_timeout_s: idle sessions expire after this long.
    :param max_sessions: live sessions kept at most (see
        :class:`~taskstore.mcp.sessions.SessionManager` for who is evicted to admit a new one,
        and when ``initialize`` gets 503 instead).
    :param health_path: the path of the health check (``GET``: 200 when the store answers a
        cheap probe within ``health_timeout_s``, else 503; no session, no Origin rule, nothing
        about the configuration in the body); ``None``: no health check.
    :param health_timeout_s: seconds the store has to answer the health probe.
    :param session_key: signs session ids, so that every worker of a deployment (gunicorn
        with several workers) accepts the sessions the others started; default
        ``$TASKSTORE_SESSION_KEY``, else the store's
        :attr:`~taskstore.TaskStore.deployment_key` (the same in every worker opened on one
        storage URL), else random (see :mod:`taskstore.mcp.sessions`).
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
        max_json_depth: int = MAX_JSON_DEPTH,
        keepalive_s: float = 15.0,
        session_idle_timeout_s: float = 3600.0,
        max_sessions: int = 10_000,
        session_key: bytes | str | None = None,
        health_path: str | None = "/healthz",
        health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S,
    ) -> None:
        self.server = server
        self.health_path = health_path
        self.health = HealthCheck(server.store, health_timeout_s)
        self.authenticate = authenticate
        self.require_auth = require_auth
        self.origins = OriginPolicy(loopback_only=loopback_only, allowed_origins=allowed_origins)
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.keepalive_s = keepalive_s
        self.sessions = SessionManager(
            idle_timeout_s=session_idle_timeout_s,
            max_sessions=max_sessions,
            store=server.store,
            key=session_key,
        )

    @property
    def loopback_only(self) -> bool:
        """Whether only loopback ``Host`` and ``Origin`` headers are accepted."""
        return self.origins.loopback_only

    def close(self) -> None:
        """End every session and stream (server shutdown)."""
        self.sessions.close()
        self.health.close()

    # -- WSGI ----------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        try:
            response = self._dispatch(environ)
        except Exception:  # noqa: BLE001 - never an HTTP 500 or a traceback on the wire
            _log.exception("internal error handling %s", environ.get("REQUEST_METHOD"))
            response = json_response(
                200, error_response(None, {"code": INTERNAL_ERROR, "message": "Internal error"})
            )
        start_response(response.status_line, response.headers)
        # http.server.request.duration: a streamed body is timed until it ends.
        body = telemetry.http_request(
            environ, response.status, response.rpc_error_code, started, response.body
        )
        return [body] if isinstance(body, bytes) else body

    def _dispatch(self, environ: WSGIEnvironment) -> Response:
        # Before the endpoint's own rules: load balancers and orchestrators probe with their
        # own Host headers and no Origin, and need no session.
        if self.health_path is not None and environ.get("PATH_INFO") == self.health_path:
            if environ.get("REQUEST_METHOD") == "GET":
                return self.health.response()
            return http_error(
                405, INVALID_REQUEST, "Method not allowed", headers=[("Allow", "GET")]
            )
        if self.path is not None and environ.get("PATH_INFO", "") not in (
            self.path,
            self.path + "/",
        ):
            return http_error(404, INVALID_REQUEST, "Not found: the MCP endpoint is " + self.path)
        refusal = self.origins.refusal(environ.get("HTTP_HOST", ""), environ.get("HTTP_ORIGIN"))
        if refusal is not None:
            return http_error(403, INVALID_REQUEST, refusal)
        method = environ.get("REQUEST_METHOD", "")
        if method == "POST":
            return self._post(environ)
        if method == "GET":
            return self._get(environ)
        if method == "DELETE":
            return self._delete(environ)
        return http_error(
            405,
            INVALID_REQUEST,
            f"Method {method} not allowed",
            headers=[("Allow", "GET, POST, DELETE")],
        )

    # -- who is calling ------------------------------------------------------------------

    def _identify(self, environ: WSGIEnvironment) -> AuthContext | Response | None:
        auth = None
        if self.authenticate is not None:
            try:
                auth = self.authenticate(environ)
            except AuthenticationError as exc:
                return http_error(401, INVALID_REQUEST, exc.message, headers=_BEARER)
        if auth is None and self.require_auth:
            return http_error(401, INVALID_REQUEST, "Authentication required", headers=_BEARER)
        return auth

    def _session_context(
        self, environ: WSGIEnvironment, auth: AuthContext | None
    ) -> tuple[Session, RequestContext] | Response:
        """Resolve a session request's session and caller, once."""
        session_id = environ.get("HTTP_MCP_SESSION_ID")
        if not session_id:
            return http_error(400, INVALID_REQUEST, "Bad Request: Mcp-Session-Id header required")
        version = environ.get("HTTP_MCP_PROTOCOL_VERSION")
        supported = version is None or version in SUPPORTED_PROTOCOL_VERSIONS
        session = self.sessions.get(session_id)
        if (
            session is not None
            and session.caller.auth is auth
            and session.caller.session_id == session_id
        ):
            # The same authentication result as when the session began (an authenticator
            # returning one AuthContext per identity, or none): the owner it resolved to.
            caller = session.caller
        else:
            caller = Caller.resolve(auth=auth, session_id=session_id)
        if session is None:
            # Started by another worker of this deployment (its signature says so)?
            try:
                session = self.sessions.adopt(
                    session_id, caller, version if supported and version else ""
                )
            except SessionTableFull:
                return busy_error(
                    None,
                    "Server busy: every session holds unfinished tasks; retry later",
                    self.sessions.retry_after_s,
                )
        # A session is bound to the identity that created it: another identity presenting its
        # id gets the same answer as for a session that does not exist.
        if session is None or caller.owner != session.caller.owner:
            return http_error(404, INVALID_REQUEST, "Session not found")
        if not supported:
            return http_error(
                400,
                INVALID_REQUEST,
                f"Bad Request: unsupported MCP-Protocol-Version {version!r}; supported: "
                + ", ".join(SUPPORTED_PROTOCOL_VERSIONS),
            )
        return session, RequestContext(caller=caller, sender=session.outbox, era=ERA_2025_11_25)

    def _read_body(self, environ: WSGIEnvironment) -> bytes | Response:
        raw_length = environ.get("CONTENT_LENGTH") or ""
        stream = environ["wsgi.input"]
        if raw_length.strip():
            try:
                length = int(raw_length)
            except ValueError:
                return http_error(400, INVALID_REQUEST, "Bad Request: invalid Content-Length")
            if length < 0:
                return http_error(400, INVALID_REQUEST, "Bad Request: invalid Content-Length")
            if length > self.max_body_bytes:
                return http_error(
                    413,
                    INVALID_REQUEST,
                    f"Request body too large (limit {self.max_body_bytes} bytes)",
                )
            return _read(stream, length) if length else b""
        if environ.get("wsgi.input_terminated"):
            # Chunked upload through a server that de-chunks (gunicorn, waitress).
            body = _read(stream, self.max_body_bytes + 1)
            if isinstance(body, Response):
                return body
            if len(body) > self.max_body_bytes:
                return http_error(
                    413,
                    INVALID_REQUEST,
                    f"Request body too large (limit {self.max_body_bytes} bytes)",
                )
            return body
        return b""  # PEP 3333: without Content-Length, read nothing

    # -- POST ----------------------------------------------------------------------------

    def _post(self, environ: WSGIEnvironment) -> Response:
        acceptable, streams = _post_accept(environ.get("HTTP_ACCEPT"))
        if not acceptable:
            return http_error(
                406,
                INVALID_REQUEST,
                "Not Acceptable: Accept must admit application/json or text/event-stream",
            )
        content_type = environ.get("CONTENT_TYPE", "")
        if content_type != JSON:  # anything but the usual value is parsed
            content_type = content_type.split(";", 1)[0].strip().lower()
            # Requiring JSON also stops browsers' CORS-free "simple" cross-site POSTs.
            if content_type != JSON and not content_type.endswith("+json"):
                return http_error(415, INVALID_REQUEST, "Content-Type must be application/json")
        body = self._read_body(environ)
        if isinstance(body, Response):
            return body
        auth = self._identify(environ)
        if isinstance(auth, Response):
            return auth
        protocol_header = environ.get("HTTP_MCP_PROTOCOL_VERSION")
        try:
            message = self._decode(body)
        except _NotJson as exc:
            return self._reply(
                era_of(None, protocol_header),
                error_response(None, {"code": PARSE_ERROR, "message": str(exc)}),
            )
        era = era_of(message, protocol_header)
        if not isinstance(message, dict):
            # JSON-RPC batches left MCP in 2025-06-18; one clean error instead of a half answer.
            refusal = "Batch requests are not supported" if isinstance(message, list) else None
            return self._reply(
                era,
                error_response(
                    None, {"code": INVALID_REQUEST, "message": refusal or "Invalid Request"}
                ),
            )
        environ[telemetry.ENVIRON_MCP_METHOD] = message.get("method")  # its metric attribute
        if not era.sessions:
            return self._stateless(environ, message, auth, era)
        if message.get("method") == "initialize" and "id" in message:
            return self._initialize(message, auth)
        found = self._session_context(environ, auth)
        if isinstance(found, Response):
            return found
        session, ctx = found
        method = message.get("method")
        creates = "id" in message and isinstance(method, str) and method not in _TASK_FREE_METHODS
        live = self.sessions.begin(session, may_create_tasks=creates)
        try:
            if not live:  # evicted or deleted since it was looked up
                return http_error(404, INVALID_REQUEST, "Session not found")
            reply = self.server.handle(message, ctx, stream=streams, keepalive_s=self.keepalive_s)
        finally:
            self.sessions.end(session)
        if reply is None:
            return Response(202)
        if isinstance(reply, dict):
            return json_response(200, reply)
        return sse_stream(reply)

    def _decode(self, body: bytes) -> object:
        """The decoded body.

        :raises _NotJson: with the parse error's message.
        """
        if json_depth_exceeds(body, self.max_json_depth):
            raise _NotJson(f"Parse error: nested deeper than {self.max_json_depth} levels")
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise _NotJson("Parse error") from None
        except RecursionError:
            # Only with a max_json_depth close to the interpreter's limit: still a refusal,
            # never a traceback.
            raise _NotJson("Parse error: nested too deeply for this server") from None

    def _stateless(
        self, environ: WSGIEnvironment, message: JsonDict, auth: AuthContext | None, era: Era
    ) -> Response:
        """A request of a stateless era (MCP 2026-07-28): no session is read, made or named;
        the caller is the authenticated identity (else the anonymous owner)."""
        ctx = RequestContext(
            caller=Caller.resolve(auth=auth), era=era, headers=_routing_headers(environ)
        )
        reply = self.server.handle(message, ctx)
        if reply is None:
            return Response(202)
        return self._reply(era, reply)

    @staticmethod
    def _reply(era: Era, reply: JsonDict) -> Response:
        """One JSON reply, with the HTTP status its era gives it."""
        return json_response(era.http_status(reply), reply)

    def _initialize(self, message: JsonDict, auth: AuthContext | None) -> Response:
        identified = Caller.resolve(auth=auth)
        session_id = self.sessions.issue(identified.owner if identified.identified else "")
        caller = Caller.resolve(auth=auth, session_id=session_id)
        session = Session(id=session_id, caller=caller, protocol_version="")
        ctx = RequestContext(caller=caller, sender=session.outbox, era=ERA_2025_11_25)
        reply = self.server.handle(message, ctx)
        if reply is None or "result" not in reply:
            return json_response(200, reply or {})
        session.protocol_version = str(reply["result"].get("protocolVersion", ""))
        if not self.sessions.add(session):
            return busy_error(
                reply.get("id"),
                "Server busy: every session holds unfinished tasks; retry later",
                self.sessions.retry_after_s,
            )
        return json_response(200, reply, headers=[(_SESSION_HEADER, session_id)])

    # -- GET / DELETE --------------------------------------------------------------------

    def _session_request(
        self, environ: WSGIEnvironment
    ) -> tuple[Session, RequestContext] | Response:
        """A GET or DELETE: they need a 2025-11-25 session (405 without one)."""
        if not environ.get("HTTP_MCP_SESSION_ID"):
            return _no_session_stream()
        auth = self._identify(environ)
        if isinstance(auth, Response):
            return auth
        return self._session_context(environ, auth)

    def _get(self, environ: WSGIEnvironment) -> Response:
        found = self._session_request(environ)
        if isinstance(found, Response):
            return found
        session, ctx = found
        if not Accept(environ.get("HTTP_ACCEPT", "")).names(SSE):
            return http_error(
                406, INVALID_REQUEST, "Not Acceptable: GET needs Accept: text/event-stream"
            )
        stream = session.outbox.open_stream()
        if stream is None:
            return http_error(
                409, INVALID_REQUEST, "Conflict: this session's stream is already open"
            )
        detach = self.server.notifier.attach(ctx.caller.owner, session.outbox, ctx.projection)
        return Response(
            200,
            self._notification_stream(session, stream, detach),
            content_type=SSE,
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
                    self.sessions.touch(session)
                    yield KEEPALIVE
                    continue
                if message is CLOSE:
                    return
                yield sse_event(message)
        finally:
            detach()
            session.outbox.close_stream(stream)

    def _delete(self, environ: WSGIEnvironment) -> Response:
        found = self._session_request(environ)
        if isinstance(found, Response):
            return found
        session, _ctx = found
        self.sessions.remove(session.id)
        return Response(200)


#: The routing headers of MCP 2026-07-28 requests, by WSGI environ key.
_ROUTING_HEADERS = {
    "HTTP_MCP_PROTOCOL_VERSION": "mcp-protocol-version",
    "HTTP_MCP_METHOD": "mcp-method",
    "HTTP_MCP_NAME": "mcp-name",
}


#: ``Accept`` values longer than this are parsed on every request rather than remembered
#: (real clients send a few dozen characters; the cache must not hold large hostile ones).
_CACHED_ACCEPT_CHARS = 256


def _post_accept(header: str | None) -> tuple[bool, bool]:
    """What a POST's ``Accept`` header allows: (a JSON or SSE answer is acceptable, the client
    names SSE itself so a ``tasks/result`` may stream)."""
    if header is not None and len(header) > _CACHED_ACCEPT_CHARS:
        return _accept_verdict(header)
    return _remembered_accept_verdict(header)


def _accept_verdict(header: str | None) -> tuple[bool, bool]:
    accept = Accept(header)
    return accept.admits(JSON) or accept.admits(SSE), accept.names(SSE)


# Clients send the same header on every request: parse each distinct value once (thread-safe,
# bounded).
_remembered_accept_verdict = functools.lru_cache(maxsize=64)(_accept_verdict)


def _routing_headers(environ: WSGIEnvironment) -> dict[str, str]:
    """The request's routing headers, by lower-case name (only those it carries)."""
    return {name: environ[key] for key, name in _ROUTING_HEADERS.items() if key in environ}


class _NotJson(Exception):
    """The body is not a JSON document the endpoint accepts (the message says why)."""


def _read(stream: Any, size: int) -> bytes | Response:
    """Up to ``size`` bytes of the body; a 408 when the server's read timeout cut it short."""
    try:
        body: bytes = stream.read(size)
    except TimeoutError:
        _log.debug("request body timed out")
        return http_error(408, INVALID_REQUEST, "Request Timeout: the body stopped arriving")
    except OSError as exc:  # the client went away mid-body: nobody reads the answer
        _log.debug("request body unreadable: %s", exc)
        return http_error(400, INVALID_REQUEST, "Bad Request: the body could not be read")
    return body


def _no_session_stream() -> Response:
    # Without a 2025-11-25 session there is no stream to offer or session to end: a stateless
    # (2026-07-28) server answers GET and DELETE with 405, which 1.x clients also accept.
    return http_error(
        405, INVALID_REQUEST, "Method not allowed without a session", headers=[("Allow", "POST")]
    )
