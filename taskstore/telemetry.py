"""OpenTelemetry metrics and traces of taskstore, optional and free when unused.

taskstore depends on the OpenTelemetry *API* only (``pip install 'taskstore[otel]'``), as a
library should: the application chooses the SDK, exporters and views. Nothing needs calling:
telemetry goes to OpenTelemetry's global providers (what ``opentelemetry-instrument`` or the
application's SDK set-up installs). Without ``opentelemetry-api``, or with it but no SDK
configured, every instrumented call site costs one attribute read (:data:`active` is
``False``): no span, no measurement, no import of ``opentelemetry`` at all until the first
store operation looks for it, once.

An SDK configured after taskstore first looked is noticed, at most once a second, by the next
HTTP request, tool call or backend retry (store operations themselves never look again, to
stay free), or at once by :func:`configure`, which also accepts explicit providers (tests,
applications that keep their own).

Metrics (meter ``taskstore``, the package version; units are UCUM, counts in braces):

- ``db.client.operation.duration`` (histogram, ``s``; ``db.system.name``,
  ``db.operation.name``, and ``error.type`` when the operation failed): one
  :class:`~taskstore.TaskStore` operation (``db.operation.name`` is the method's name:
  ``create``, ``get``, ``complete``, ``list``, ``wait``, ...), from its first backend call to its
  last, retries and compare-and-set rounds included. ``db.system.name`` names the backend
  (:func:`system_name`: ``memory``, ``redis``, ``aws.dynamodb``, ``sqlite``, ``postgresql``);
  ``error.type`` is the exception's qualified class name
  (``taskstore.errors.TaskNotFoundError``). Buckets: the semantic conventions' (1 ms to 10 s),
  as an advisory (opentelemetry-api 1.30+; a view overrides it).
- ``taskstore.tasks.created`` (counter, ``{task}``; ``db.system.name``): tasks created.
- ``taskstore.tasks.ended`` (counter, ``{task}``; ``db.system.name``,
  ``taskstore.task.status``): tasks that reached ``completed``, ``failed`` or ``cancelled``. A
  repeated, idempotent finish is not counted again; tasks failed by a stale-task recovery pass
  are.
- ``taskstore.backend.errors`` (counter, ``{error}``; ``db.system.name``,
  ``db.operation.name``, ``error.type``): store operations that ended with a
  :class:`~taskstore.errors.BackendError` (after the backend's own retries).
- ``taskstore.backend.retries`` (counter, ``{retry}``; ``db.system.name``,
  ``db.operation.name``, the backend's name of the call): transient faults a backend retried
  (:func:`taskstore.backends.base.note_retry`).
- ``taskstore.store.conflicts`` (counter, ``{conflict}``; ``db.system.name``,
  ``db.operation.name``): compare-and-set rounds lost to a concurrent writer (each is re-read
  and re-applied; :class:`~taskstore.errors.ConflictError` only once the budget is spent).
- ``taskstore.quota.rejections`` (counter, ``{rejection}``; ``db.system.name``): creates
  refused with :class:`~taskstore.errors.QuotaExceededError`.
- ``taskstore.runner.queue_depth`` and ``taskstore.runner.running`` (observable up-down
  counters, ``{call}``; no attributes): task-augmented tool calls waiting for, and running on,
  the tool pools of this process, observed at each collection.
- ``http.server.request.duration`` (histogram, ``s``; ``http.request.method``,
  ``http.response.status_code``, ``url.scheme``, ``mcp.method.name``,
  ``rpc.response.status_code``, and ``error.type`` on HTTP 5xx): every request
  :class:`~taskstore.http.McpWsgiApp` answers, until the last byte of its body (a stream: until
  it ends). ``mcp.method.name`` is the JSON-RPC method of a POST (``_OTHER`` for one MCP does
  not define); ``rpc.response.status_code`` the JSON-RPC error code of an error reply, as a
  string. HTTP server *spans* are left to the WSGI instrumentation
  (``opentelemetry-instrumentation-wsgi``), inside which taskstore's spans nest.

Spans (tracer ``taskstore``):

- ``taskstore.<operation>`` (kind ``INTERNAL``) around each store operation, with
  ``db.system.name``, ``db.operation.name`` and ``taskstore.task.id`` (when the operation is
  about one task); backend driver spans, if their instrumentation is on, nest inside.
- ``execute_tool <tool name>`` (kind ``INTERNAL``, the GenAI conventions' tool span) around
  each tool run, with ``gen_ai.operation.name`` = ``execute_tool``, ``gen_ai.tool.name`` and
  ``taskstore.task.id`` (task-augmented calls). A task's tool runs on a pool thread but stays
  in the trace of the request that created the task.
- A failed operation or tool sets the span status to ``ERROR`` and ``error.type`` (exception
  class; ``tool_error`` for an ``isError`` result), never the exception's message.

Privacy: no attribute ever holds an owner, a session id, tool arguments, results, variables,
status messages or exception messages; task ids and tool names are the only identifiers.

Thread-safe; a failure inside OpenTelemetry is logged once and never fails an operation.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from taskstore._version import __version__
from taskstore.errors import BackendError, QuotaExceededError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

__all__ = [
    "BACKEND_ERRORS",
    "BACKEND_RETRIES",
    "ENVIRON_MCP_METHOD",
    "HTTP_SERVER_DURATION",
    "OPERATION_DURATION",
    "QUOTA_REJECTIONS",
    "RUNNER_QUEUE_DEPTH",
    "RUNNER_RUNNING",
    "STORE_CONFLICTS",
    "TASKS_CREATED",
    "TASKS_ENDED",
    "ToolRun",
    "active",
    "backend_retry",
    "configure",
    "current_context",
    "http_request",
    "store_conflict",
    "store_operation",
    "system_name",
    "task_created",
    "task_ended",
    "tool_run",
    "track_scheduler",
]

_log = logging.getLogger("taskstore.telemetry")

OPERATION_DURATION = "db.client.operation.duration"
TASKS_CREATED = "taskstore.tasks.created"
TASKS_ENDED = "taskstore.tasks.ended"
BACKEND_ERRORS = "taskstore.backend.errors"
BACKEND_RETRIES = "taskstore.backend.retries"
STORE_CONFLICTS = "taskstore.store.conflicts"
QUOTA_REJECTIONS = "taskstore.quota.rejections"
RUNNER_QUEUE_DEPTH = "taskstore.runner.queue_depth"
RUNNER_RUNNING = "taskstore.runner.running"
HTTP_SERVER_DURATION = "http.server.request.duration"

#: The WSGI environ key where :class:`~taskstore.http.McpWsgiApp` leaves a POST's JSON-RPC
#: method for :func:`http_request`.
ENVIRON_MCP_METHOD = "taskstore.mcp.method"

#: The hot-path gate, read by the store before calling in (read only: see :func:`configure`).
#: ``False`` when OpenTelemetry is absent or disabled, or no SDK was configured when last
#: looked for; ``True`` while recording, and before the first look.
active = True
# False only when OpenTelemetry is absent or disabled: the gate of the call sites that may
# look again for a late SDK (HTTP requests, tool calls, backend retries).
_enabled = True

# Semantic conventions' advisory buckets (seconds): database client operations, HTTP server.
_DB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# A late SDK is looked for at most this often (seconds).
_PROBE_INTERVAL_S = 1.0
# Provider classes that record nothing: the API's stand-ins until an SDK is set.
_PLACEHOLDERS = frozenset(
    {"ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider", "NoOpMeterProvider"}
)
# Bundled backends' db.system.name (semantic-convention values where one exists), by class.
_BUNDLED_SYSTEMS = {
    "taskstore.backends.memory.InMemoryBackend": "memory",
    "taskstore.backends.redis.RedisBackend": "redis",
    "taskstore.backends.dynamodb.backend.DynamoDbBackend": "aws.dynamodb",
    "taskstore.backends.sqlite.SqliteBackend": "sqlite",
    "taskstore.backends.postgres.PostgresBackend": "postgresql",
}
# Methods MCP defines (any revision served here); others are reported as _OTHER, so a client
# cannot mint metric series at will.
_MCP_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
        "tasks/get",
        "tasks/result",
        "tasks/list",
        "tasks/cancel",
        "tasks/update",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
        "notifications/tasks/status",
    }
)
_HTTP_METHODS = frozenset(
    {"GET", "POST", "DELETE", "HEAD", "OPTIONS", "PUT", "PATCH", "CONNECT", "TRACE"}
)

_lock = threading.Lock()
_signals: _Signals | None = None
_next_probe = 0.0
_meter_provider: MeterProvider | None = None
_tracer_provider: TracerProvider | None = None
_disabled = False
_warned = False
# The instruments last built, by the providers they came from: configuring the same providers
# again reuses them (the SDK warns about instruments registered twice).
_built: tuple[object, object, _Signals] | None = None
_system_names: dict[type[Any], str] = {}
_error_types: dict[type[BaseException], str] = {}


class _Scheduler(Protocol):
    def queued(self) -> int: ...

    def running(self) -> int: ...


_schedulers: weakref.WeakSet[_Scheduler] = weakref.WeakSet()
# Apart from _lock: the SDK calls the observers holding its own locks, while _lock is held
# around instrument creation, which takes them too.
_schedulers_lock = threading.Lock()


# -- configuration -----------------------------------------------------------------------------


def configure(
    *,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    enabled: bool = True,
) -> None:
    """Choose where taskstore's telemetry goes, and look for an SDK again now.

    Not needed with OpenTelemetry's global providers, configured before taskstore's first
    operation. Takes effect for operations that start afterwards. Thread-safe.

    :param meter_provider: record metrics there instead of the global meter provider.
    :param tracer_provider: record spans there instead of the global tracer provider.
    :param enabled: ``False`` turns telemetry off (every call site back to one attribute
        read) until called again with ``True``.
    """
    global _meter_provider, _tracer_provider, _disabled, _signals, _next_probe, active, _enabled
    with _lock:
        _meter_provider = meter_provider
        _tracer_provider = tracer_provider
        _disabled = not enabled
        _signals = None
        _next_probe = 0.0
        _enabled = active = enabled  # looked for again by the next operation


def system_name(backend: object) -> str:
    """The ``db.system.name`` of ``backend``: its ``telemetry_name`` attribute when it has
    one (third-party backends may declare it), the bundled backends' own names, else its
    class name."""
    cls = type(backend)
    name = _system_names.get(cls)
    if name is None:
        declared = getattr(backend, "telemetry_name", None)
        name = (
            declared
            if isinstance(declared, str) and declared
            else _BUNDLED_SYSTEMS.get(f"{cls.__module__}.{cls.__qualname__}", cls.__name__)
        )
        _system_names[cls] = name
    return name


# -- resolution --------------------------------------------------------------------------------


def _recording_provider(provider: object) -> bool:
    return type(provider).__name__ not in _PLACEHOLDERS


def _resolve() -> _Signals | None:
    """Look for an SDK (at most once per :data:`_PROBE_INTERVAL_S`); the instruments when
    one is configured, else ``None``. Sets :data:`active` (and ``_enabled``)."""
    global _signals, _next_probe, active, _enabled, _built
    with _lock:
        if _signals is not None:
            return _signals
        now = time.monotonic()
        if _disabled or now < _next_probe:
            active = False
            return None
        _next_probe = now + _PROBE_INTERVAL_S
        try:
            from opentelemetry import metrics, trace
        except ImportError:
            _enabled = active = False
            return None
        meter_provider = _meter_provider or metrics.get_meter_provider()
        tracer_provider = _tracer_provider or trace.get_tracer_provider()
        sdk_disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        if sdk_disabled or not (
            _recording_provider(meter_provider) or _recording_provider(tracer_provider)
        ):
            active = False
            return None
        if _built is not None and _built[:2] == (meter_provider, tracer_provider):
            _signals = _built[2]
        else:
            try:
                # The provider not configured (if one is not) is the API's proxy, which starts
                # recording by itself once an SDK is set.
                _signals = _Signals(meter_provider, tracer_provider)
            except Exception:  # noqa: BLE001 - telemetry must never break the store
                _warn_once()
                active = False
                return None
            _built = (meter_provider, tracer_provider, _signals)
        active = True
        return _signals


def _current() -> _Signals | None:
    """The instruments, looking for a late SDK when due (low-frequency call sites)."""
    signals = _signals
    if signals is not None or not _enabled or time.monotonic() < _next_probe:
        return signals
    return _resolve()


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        _log.warning(
            "OpenTelemetry failed inside taskstore; telemetry may be incomplete", exc_info=True
        )


def _histogram(meter: Meter, name: str, description: str, buckets: tuple[float, ...]) -> Any:
    try:
        return meter.create_histogram(
            name, unit="s", description=description,
            explicit_bucket_boundaries_advisory=list(buckets),
        )
    except TypeError:  # opentelemetry-api < 1.30 takes no advisory
        return meter.create_histogram(name, unit="s", description=description)


class _Signals:
    """The tracer and instruments of one configuration (immutable once built)."""

    def __init__(self, meter_provider: MeterProvider, tracer_provider: TracerProvider) -> None:
        from opentelemetry.context import attach, detach, get_current
        from opentelemetry.metrics import Observation
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

        meter = meter_provider.get_meter("taskstore", __version__)
        self.tracer = tracer_provider.get_tracer("taskstore", __version__)
        self.attach = attach
        self.detach = detach
        self.in_context = set_span_in_context
        self.get_current = get_current
        self.internal = SpanKind.INTERNAL
        self.error_status = Status(StatusCode.ERROR)
        self.observation = Observation
        self.operation_duration = _histogram(
            meter, OPERATION_DURATION, "Duration of taskstore store operations", _DB_BUCKETS
        )
        self.http_duration = _histogram(
            meter, HTTP_SERVER_DURATION, "Duration of HTTP server requests", _HTTP_BUCKETS
        )
        counter = meter.create_counter
        self.created = counter(TASKS_CREATED, "{task}", "Tasks created")
        self.ended = counter(TASKS_ENDED, "{task}", "Tasks that reached a terminal status")
        self.errors = counter(
            BACKEND_ERRORS, "{error}", "Store operations failed by the storage backend"
        )
        self.retries = counter(
            BACKEND_RETRIES, "{retry}", "Backend calls retried after a transient fault"
        )
        self.conflicts = counter(
            STORE_CONFLICTS, "{conflict}", "Compare-and-set rounds lost to a concurrent write"
        )
        self.rejections = counter(
            QUOTA_REJECTIONS, "{rejection}", "Task creations refused by the owner's quota"
        )
        meter.create_observable_up_down_counter(
            RUNNER_QUEUE_DEPTH, [self._observe_queued], "{call}",
            "Task-augmented tool calls waiting for the tool pool",
        )
        meter.create_observable_up_down_counter(
            RUNNER_RUNNING, [self._observe_running], "{call}",
            "Task-augmented tool calls running on the tool pool",
        )
        self._attributes: dict[tuple[str, str], dict[str, str]] = {}

    def attributes(self, system: str, operation: str) -> dict[str, str]:
        """The shared (never mutated) attributes of one operation on one backend."""
        key = (system, operation)
        found = self._attributes.get(key)
        if found is None:
            found = self._attributes[key] = {
                "db.system.name": system,
                "db.operation.name": operation,
            }
        return found

    def _observe_queued(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [self.observation(sum(s.queued() for s in _live_schedulers()))]

    def _observe_running(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [self.observation(sum(s.running() for s in _live_schedulers()))]


def _error_type(cls: type[BaseException]) -> str:
    """``error.type`` of an exception class: its qualified name (builtins unqualified)."""
    name = _error_types.get(cls)
    if name is None:
        module = cls.__module__
        name = _error_types[cls] = (
            cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
        )
    return name


# -- store operations --------------------------------------------------------------------------


class _StoreOperation:
    """Span and duration of one store operation around ``within`` (the retry deadline)."""

    __slots__ = ("_operation", "_signals", "_span", "_start", "_system", "_task_id", "_token",
                 "_within")

    def __init__(
        self,
        signals: _Signals,
        system: str,
        operation: str,
        task_id: str | None,
        within: AbstractContextManager[Any] | None,
    ) -> None:
        self._signals = signals
        self._system = system
        self._operation = operation
        self._task_id = task_id
        self._within = within
        self._span: Span | None = None
        self._token: Token[Context] | None = None
        self._start = 0.0

    def __enter__(self) -> None:
        if self._within is not None:
            self._within.__enter__()
        try:
            signals = self._signals
            attributes = dict(signals.attributes(self._system, self._operation))
            if self._task_id is not None:
                attributes["taskstore.task.id"] = self._task_id
            span = signals.tracer.start_span(
                "taskstore." + self._operation,
                kind=signals.internal,
                attributes=attributes,
                record_exception=False,  # exception messages stay out of telemetry
                set_status_on_exception=False,
            )
            self._token = signals.attach(signals.in_context(span))
            self._span = span
        except Exception:  # noqa: BLE001 - telemetry must never break the store
            _warn_once()
        self._start = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._start
        signals = self._signals
        span = self._span
        attributes = signals.attributes(self._system, self._operation)
        try:
            if exc_type is not None:
                error = _error_type(exc_type)
                attributes = {**attributes, "error.type": error}
                if span is not None:
                    span.set_attribute("error.type", error)
                    span.set_status(signals.error_status)
        except Exception:  # noqa: BLE001 - telemetry must never break the store
            _warn_once()
        # The span ends first: the measurements below then cost no exemplar of it (they
        # still link to the caller's span, a request's, when there is one).
        _end(signals, span, self._token)
        try:
            signals.operation_duration.record(elapsed, attributes)
            if exc_type is not None:
                if issubclass(exc_type, BackendError):
                    signals.errors.add(1, attributes)
                elif issubclass(exc_type, QuotaExceededError):
                    signals.rejections.add(1, {"db.system.name": self._system})
        except Exception:  # noqa: BLE001 - telemetry must never break the store
            _warn_once()
        finally:
            if self._within is not None:
                self._within.__exit__(exc_type, exc, tb)


def _end(signals: _Signals, span: Span | None, token: Token[Context] | None) -> None:
    """Leave ``span``'s context and end it (no-op without a span)."""
    if span is None or token is None:
        return
    try:
        signals.detach(token)
        span.end()
    except Exception:  # noqa: BLE001 - telemetry must never break the store
        _warn_once()


class _Null:
    """The context manager of telemetry that records nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


_NULL = _Null()


def store_operation(
    backend: object,
    operation: str,
    task_id: str | None = None,
    within: AbstractContextManager[Any] | None = None,
) -> AbstractContextManager[Any]:
    """A context manager recording one store operation (span and duration, errors, quota
    rejections) around ``within``; ``within`` itself (or a no-op) when not recording.

    Call it only when :data:`active`: it may look for an SDK (the first call does).
    """
    signals = _signals if _signals is not None else _resolve()
    if signals is None:
        return within if within is not None else _NULL
    return _StoreOperation(signals, system_name(backend), operation, task_id, within)


def task_created(backend: object) -> None:
    """Count one task created (call when :data:`active`)."""
    signals = _signals
    if signals is not None:
        _add(signals.created, {"db.system.name": system_name(backend)})


def task_ended(backend: object, status: str) -> None:
    """Count one task that reached the terminal ``status`` (call when :data:`active`)."""
    signals = _signals
    if signals is not None:
        _add(
            signals.ended,
            {"db.system.name": system_name(backend), "taskstore.task.status": status},
        )


def store_conflict(backend: object, operation: str) -> None:
    """Count one compare-and-set round lost by ``operation`` (call when :data:`active`)."""
    signals = _signals
    if signals is not None:
        _add(signals.conflicts, signals.attributes(system_name(backend), operation))


def backend_retry(system: str, operation: str) -> None:
    """Count one retry of a transient fault (through
    :func:`taskstore.backends.base.note_retry`)."""
    signals = _current()
    if signals is not None:
        _add(signals.retries, signals.attributes(system, operation))


def _add(counter: Any, attributes: Mapping[str, str]) -> None:
    try:
        counter.add(1, attributes)
    except Exception:  # noqa: BLE001 - telemetry must never break the store
        _warn_once()


# -- tool runs ---------------------------------------------------------------------------------


class ToolRun:
    """The handle of one tool run's span (:func:`tool_run`)."""

    __slots__ = ()

    def failed(self, error_type: str) -> None:
        """Mark the run failed with ``error_type`` (e.g. ``tool_error`` for an ``isError``
        result), though the tool returned."""


class _RecordedToolRun(ToolRun):
    __slots__ = ("_name", "_parent", "_signals", "_span", "_task_id", "_token")

    def __init__(
        self, signals: _Signals, name: str, task_id: str | None, parent: Context | None
    ) -> None:
        self._signals = signals
        self._name = name
        self._task_id = task_id
        self._parent = parent
        self._span: Span | None = None
        self._token: Token[Context] | None = None

    def failed(self, error_type: str) -> None:
        span = self._span
        if span is not None:
            try:
                span.set_attribute("error.type", error_type)
                span.set_status(self._signals.error_status)
            except Exception:  # noqa: BLE001 - telemetry must never break a tool run
                _warn_once()

    def __enter__(self) -> ToolRun:
        try:
            signals = self._signals
            attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": self._name}
            if self._task_id is not None:
                attributes["taskstore.task.id"] = self._task_id
            span = signals.tracer.start_span(
                "execute_tool " + self._name,
                context=self._parent,
                kind=signals.internal,
                attributes=attributes,
                record_exception=False,  # exception messages stay out of telemetry
                set_status_on_exception=False,
            )
            self._token = signals.attach(signals.in_context(span))
            self._span = span
        except Exception:  # noqa: BLE001 - telemetry must never break a tool run
            _warn_once()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.failed(_error_type(exc_type))
        _end(self._signals, self._span, self._token)


class _NullToolRun(ToolRun):
    __slots__ = ()

    def __enter__(self) -> ToolRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


_NULL_TOOL_RUN = _NullToolRun()


def current_context() -> Context | None:
    """The caller's OpenTelemetry context, to parent a tool run started on another thread
    (``None`` when not recording)."""
    signals = _current()
    if signals is None:
        return None
    context: Context = signals.get_current()
    return context


def tool_run(
    name: str, task_id: str | None = None, parent: Context | None = None
) -> AbstractContextManager[ToolRun]:
    """A context manager around one tool run: an ``execute_tool <name>`` span, child of
    ``parent`` (from :func:`current_context` on the requesting thread) or of the current
    context. An exception leaving the block marks the span failed (its class only)."""
    signals = _current()
    if signals is None:
        return _NULL_TOOL_RUN
    return _RecordedToolRun(signals, name, task_id, parent)


# -- tool pools --------------------------------------------------------------------------------


def track_scheduler(scheduler: _Scheduler) -> None:
    """Count ``scheduler``'s ``queued()`` and ``running()`` calls into
    ``taskstore.runner.queue_depth`` and ``taskstore.runner.running`` while it lives (held
    weakly; cheap, whether or not telemetry records)."""
    with _schedulers_lock:
        _schedulers.add(scheduler)


def _live_schedulers() -> list[_Scheduler]:
    with _schedulers_lock:
        return list(_schedulers)


# -- HTTP --------------------------------------------------------------------------------------


def http_request(
    environ: Mapping[str, Any],
    status: int,
    rpc_error_code: int | None,
    started: float,
    body: bytes | Iterable[bytes],
) -> bytes | Iterable[bytes]:
    """Record one HTTP request (``started``: its ``time.perf_counter()``) and return its
    body: as is, or, for a stream, wrapped to record once the stream ends."""
    signals = _current()
    if signals is None:
        return body
    try:
        method = environ.get("REQUEST_METHOD", "")
        attributes: dict[str, str | int] = {
            "http.request.method": method if method in _HTTP_METHODS else "_OTHER",
            "http.response.status_code": status,
            "url.scheme": str(environ.get("wsgi.url_scheme", "http")),
        }
        mcp_method = environ.get(ENVIRON_MCP_METHOD)
        if isinstance(mcp_method, str):
            attributes["mcp.method.name"] = (
                mcp_method if mcp_method in _MCP_METHODS else "_OTHER"
            )
        if isinstance(rpc_error_code, int) and not isinstance(rpc_error_code, bool):
            attributes["rpc.response.status_code"] = str(rpc_error_code)
        if status >= 500:
            attributes["error.type"] = str(status)
    except Exception:  # noqa: BLE001 - telemetry must never break a request
        _warn_once()
        return body
    histogram = signals.http_duration

    def finish() -> None:
        try:
            histogram.record(time.perf_counter() - started, attributes)
        except Exception:  # noqa: BLE001 - telemetry must never break a request
            _warn_once()

    if isinstance(body, bytes):
        finish()
        return body
    return _streamed(body, finish)


def _streamed(body: Iterable[bytes], finish: Callable[[], None]) -> Iterator[bytes]:
    """``body``, calling ``finish()`` once it ends, fails or is closed by the server."""
    try:
        yield from body
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()  # a generator closed twice is fine; PEP 3333 wants the iterable's close
        finish()
