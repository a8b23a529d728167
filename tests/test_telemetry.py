"""taskstore.telemetry with the OpenTelemetry SDK: exact metrics after scripted lifecycles,
spans around store operations and tool runs, and nothing private in any attribute."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from support.servers import require_modules

require_modules("opentelemetry.sdk", markers=["otel"])

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import taskstore
from support.mcp import build_server, call_app, open_session, wait_until
from taskstore import ManualClock, TaskStatus, TaskStore, telemetry
from taskstore.backends.base import note_retry
from taskstore.backends.memory import InMemoryBackend
from taskstore.errors import (
    BackendError,
    ConflictError,
    InvalidTransitionError,
    QuotaExceededError,
    TaskNotFoundError,
)
from taskstore.mcp import AuthContext, McpServer, ToolContext
from taskstore.mcp.auth import Caller
from taskstore.mcp.request import RequestContext
from taskstore.wsgi import McpWsgiApp, bearer_authenticator

pytestmark = pytest.mark.otel

Points = dict[tuple[str, frozenset[tuple[str, Any]]], Any]


class Recorded:
    """The SDK's in-memory metric reader and span exporter, wired into taskstore."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def points(self) -> Points:
        """Every data point: (metric name, attributes) → value (counters, up-down counters)
        or count (histograms)."""
        found: Points = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                assert scope.scope.name == "taskstore"
                assert scope.scope.version == taskstore.__version__
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count  # type: ignore[union-attr]
                        key = (metric.name, frozenset((point.attributes or {}).items()))
                        found[key] = value
        return found

    def value(self, name: str, **attributes: Any) -> Any:
        """The value of ``name`` at exactly ``attributes`` (dots spelled ``__``), 0 if none."""
        wanted = frozenset((k.replace("__", "."), v) for k, v in attributes.items())
        return self.points().get((name, wanted), 0)

    def units(self) -> dict[str, str]:
        """Metric name → unit."""
        data = self.reader.get_metrics_data()
        return {
            metric.name: metric.unit or ""
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    """Telemetry recorded in memory for the test, back to the global providers after."""
    made = Recorded()
    telemetry.configure(meter_provider=made.meter_provider, tracer_provider=made.tracer_provider)
    yield made
    telemetry.configure()
    made.tracer_provider.shutdown()
    made.meter_provider.shutdown()


@pytest.fixture
def store() -> Iterator[TaskStore]:
    """A memory store on a manual clock with room for 3 tasks per owner."""
    made = TaskStore(
        InMemoryBackend(),
        clock=ManualClock(),
        security=taskstore.SecurityConfig(max_tasks_per_owner=3),
    )
    yield made
    made.close()


DURATION = telemetry.OPERATION_DURATION


def test_scripted_lifecycle_gives_exact_counts(recorded: Recorded, store: TaskStore) -> None:
    """Creates, finishes (a repeated finish counted once), quota rejections and failed reads
    give exact counters and one duration per operation, under the conventions' names."""
    first = store.create("alice")
    second = store.create("alice")
    third = store.create("alice")
    with pytest.raises(QuotaExceededError):
        store.create("alice")
    store.get(first.task_id, "alice")
    store.set_variables(first.task_id, "alice", {"step": 1})
    store.complete(first.task_id, "alice", {"ok": True})
    store.complete(first.task_id, "alice", {"ok": True})  # idempotent retry: not counted again
    store.fail(second.task_id, "alice", message="no")
    store.cancel(third.task_id, "alice")
    with pytest.raises(InvalidTransitionError):
        store.cancel(first.task_id, "alice")
    with pytest.raises(TaskNotFoundError):
        store.get(first.task_id, "bob")
    assert store.get_result(first.task_id, "alice").result == {"ok": True}
    store.list("alice")

    memory = {"db__system__name": "memory"}
    assert recorded.value("taskstore.tasks.created", **memory) == 3
    for status in ("completed", "failed", "cancelled"):
        assert recorded.value(
            "taskstore.tasks.ended", **memory, taskstore__task__status=status
        ) == 1, status
    assert recorded.value("taskstore.quota.rejections", **memory) == 1

    def ops(name: str, error: str | None = None) -> Any:
        extra = {} if error is None else {"error__type": error}
        return recorded.value(DURATION, **memory, db__operation__name=name, **extra)

    assert ops("create") == 3
    assert ops("create", "taskstore.errors.QuotaExceededError") == 1
    assert ops("get") == 1
    assert ops("get", "taskstore.errors.TaskNotFoundError") == 1
    assert ops("set_variables") == 1
    assert ops("complete") == 2
    assert ops("fail") == 1
    assert ops("cancel") == 1
    assert ops("cancel", "taskstore.errors.InvalidTransitionError") == 1
    assert ops("get_result") == 1
    assert ops("list") == 1
    assert recorded.value("taskstore.backend.errors", **memory) == 0
    assert recorded.value("taskstore.store.conflicts", **memory) == 0
    assert recorded.units() == {
        DURATION: "s",
        "taskstore.tasks.created": "{task}",
        "taskstore.tasks.ended": "{task}",
        "taskstore.quota.rejections": "{rejection}",
        "taskstore.runner.queue_depth": "{call}",
        "taskstore.runner.running": "{call}",
    }


def test_store_operation_spans(recorded: Recorded, store: TaskStore) -> None:
    """Each operation is a taskstore.<operation> span carrying the task id and the backend; a
    failure sets ERROR and error.type, never the exception's message."""
    record = store.create("alice")
    store.complete(record.task_id, "alice", {"ok": True})
    with pytest.raises(InvalidTransitionError):
        store.cancel(record.task_id, "alice")
    spans = recorded.spans()
    assert [span.name for span in spans] == [
        "taskstore.create",
        "taskstore.complete",
        "taskstore.cancel",
    ]
    for span in spans:
        assert span.kind is trace.SpanKind.INTERNAL
        assert span.attributes is not None
        assert span.attributes["taskstore.task.id"] == record.task_id
        assert span.attributes["db.system.name"] == "memory"
    failed = spans[-1]
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert failed.status.description is None
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "taskstore.errors.InvalidTransitionError"
    assert not failed.events  # no exception event: its message could carry anything


def test_wait_is_one_span_around_its_rounds(recorded: Recorded) -> None:
    """wait() is one span and one duration, whatever the number of reads it makes."""
    store = taskstore.open("memory://", poll_interval_ms=10)
    record = store.create("alice")
    timer = threading.Timer(0.1, store.complete, (record.task_id, "alice", None))
    timer.start()
    store.wait(record.task_id, "alice", timeout=5)
    timer.join()
    names = [span.name for span in recorded.spans()]
    assert names.count("taskstore.wait") == 1
    assert recorded.value(DURATION, db__system__name="memory", db__operation__name="wait") == 1
    store.close()


def test_conflicts_are_counted(recorded: Recorded, store: TaskStore) -> None:
    """Each compare-and-set round lost to a concurrent write counts once."""
    record = store.create("alice")
    rounds = 0

    def update(current: Any) -> dict[str, Any]:
        nonlocal rounds
        rounds += 1
        if rounds == 1:  # a write slips in between this round's read and its write
            store.set_variables(record.task_id, "alice", {"other": 1})
        return {"mine": rounds}

    store.update_variables(record.task_id, "alice", update)
    assert rounds == 2
    assert recorded.value(
        "taskstore.store.conflicts", db__system__name="memory",
        db__operation__name="update_variables",
    ) == 1


def test_conflict_budget_spent_is_an_error_type(recorded: Recorded) -> None:
    """A ConflictError after the budget is recorded as the operation's error.type."""
    store = TaskStore(InMemoryBackend(), config=taskstore.StoreConfig(conflict_retry_budget_ms=0))
    record = store.create("alice")

    def update(current: Any) -> dict[str, Any]:
        store.set_variables(record.task_id, "alice", {"other": current.version})
        return {"mine": 1}

    with pytest.raises(ConflictError):
        store.update_variables(record.task_id, "alice", update)
    assert recorded.value(
        DURATION, db__system__name="memory", db__operation__name="update_variables",
        error__type="taskstore.errors.ConflictError",
    ) == 1


class _FailingGets(InMemoryBackend):
    """A memory backend whose reads fail as a storage outage would."""

    telemetry_name = "flaky"

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise BackendError("storage down", applied=False, transient=True)


def test_backend_errors_and_retries(recorded: Recorded) -> None:
    """A BackendError leaving an operation counts as a backend error (db.system.name from the
    backend's telemetry_name); note_retry counts backend retries."""
    store = TaskStore(_FailingGets())
    record = store.create("alice")
    with pytest.raises(BackendError):
        store.get(record.task_id, "alice")
    note_retry("flaky", "get")
    note_retry("flaky", "get")
    attributes = {"db__system__name": "flaky", "db__operation__name": "get"}
    assert recorded.value(
        "taskstore.backend.errors", **attributes, error__type="taskstore.errors.BackendError"
    ) == 1
    assert recorded.value("taskstore.backend.retries", **attributes) == 2
    assert recorded.units()["taskstore.backend.retries"] == "{retry}"
    assert recorded.units()["taskstore.backend.errors"] == "{error}"


@pytest.mark.redis
def test_redis_retries_are_counted(recorded: Recorded) -> None:
    """The Redis backend's retrier reports each retry of a transient fault."""
    pytest.importorskip("redis")
    import redis.exceptions

    from taskstore.backends._redis_faults import Retrier

    attempts = 0

    def flaky() -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise redis.exceptions.ConnectionError("refused")
        return 7

    assert Retrier(tracked=False).call("evalsha", flaky) == 7
    assert recorded.value(
        "taskstore.backend.retries", db__system__name="redis", db__operation__name="evalsha"
    ) == 2


@pytest.mark.dynamodb
def test_dynamodb_retries_are_counted(recorded: Recorded) -> None:
    """The DynamoDB backend reports each repeat of a request boto3 gave up on."""
    pytest.importorskip("boto3")
    from types import SimpleNamespace

    from botocore.exceptions import ClientError

    from taskstore.backends.dynamodb.client import Requests

    attempts = 0

    class Client:
        meta = SimpleNamespace(events=SimpleNamespace(register=lambda *a, **k: None))

        def get_item(self, **params: Any) -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            if attempts < 2:
                raise ClientError(
                    {
                        "Error": {"Code": "InternalServerError", "Message": "try again"},
                        "ResponseMetadata": {"HTTPStatusCode": 500},
                    },
                    "GetItem",
                )
            return {}

    assert Requests(Client(), "t", 1.0).send("get_item", {}) == {}
    assert recorded.value(
        "taskstore.backend.retries", db__system__name="aws.dynamodb",
        db__operation__name="get_item",
    ) == 1


def test_stale_recovery_counts_failed_tasks(recorded: Recorded) -> None:
    """Tasks failed by a recovery pass count as ended (failed), inside one fail_stale span."""
    clock = ManualClock()
    store = TaskStore(InMemoryBackend(), clock=clock)
    for _ in range(2):
        store.create("alice")
    clock.advance(60_000)
    assert store.fail_stale(older_than_ms=1_000, message="abandoned") == 2
    assert recorded.value(
        "taskstore.tasks.ended", db__system__name="memory", taskstore__task__status="failed"
    ) == 2
    spans = {span.name: span for span in recorded.spans()}
    fails = [span for span in recorded.spans() if span.name == "taskstore.fail"]
    assert len(fails) == 2
    outer = spans["taskstore.fail_stale"]
    assert all(span.parent is not None for span in fails)
    assert {span.parent.span_id for span in fails if span.parent} == {outer.context.span_id}


# -- MCP: tool runs, runner gauges, HTTP -------------------------------------------------------


@pytest.fixture
def server() -> Iterator[McpServer]:
    """The test tools on a memory store, one worker, one running call per owner."""
    store = taskstore.open("memory://", poll_interval_ms=20)
    made = build_server(store, max_workers=1, max_running_per_owner=1)
    yield made
    made.release.set()  # type: ignore[attr-defined]
    made.close()
    store.close()


def _alice() -> RequestContext:
    return RequestContext(caller=Caller.resolve(auth=AuthContext(subject="alice")))


def _rpc(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:  # noqa: A002
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def test_tool_run_span_joins_the_request_trace(recorded: Recorded, server: McpServer) -> None:
    """A task's tool runs on a pool thread in an execute_tool span whose parent is the span
    of the request that created the task."""
    tracer = recorded.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request_span:
        answer = server.runner.call_tool(
            {"name": "echo", "arguments": {"text": "hi"}, "task": {}}, _alice()
        )
    assert answer.task_id is not None
    server.store.wait(answer.task_id, "alice", timeout=5)
    assert wait_until(lambda: any(s.name == "execute_tool echo" for s in recorded.spans()))
    run = next(span for span in recorded.spans() if span.name == "execute_tool echo")
    assert run.parent is not None
    assert run.parent.span_id == request_span.get_span_context().span_id
    assert run.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "echo",
        "taskstore.task.id": answer.task_id,
    }
    assert run.status.status_code is trace.StatusCode.UNSET


def test_failing_tools_mark_their_span(recorded: Recorded, server: McpServer) -> None:
    """A tool raising, and a tool answering isError, end their spans with ERROR and
    error.type (the exception class; tool_error), never the message."""
    ctx = _alice()
    for name in ("crash", "tool_error"):
        answer = server.runner.call_tool({"name": name, "arguments": {}, "task": {}}, ctx)
        assert answer.task_id is not None
        server.store.wait(answer.task_id, "alice", timeout=5)
    def runs() -> dict[str, ReadableSpan]:
        return {s.name: s for s in recorded.spans() if s.name.startswith("execute_tool")}

    assert wait_until(lambda: len(runs()) == 2)
    crash, failed = runs()["execute_tool crash"], runs()["execute_tool tool_error"]
    assert crash.status.status_code is trace.StatusCode.ERROR
    assert crash.attributes is not None
    assert crash.attributes["error.type"] == "RuntimeError"
    assert not crash.events
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "taskstore.errors.ToolError"


def test_runner_queue_depth_and_running(recorded: Recorded, server: McpServer) -> None:
    """The runner's gauges show the calls running and waiting, and fall back to zero."""
    ctx = _alice()
    for _ in range(3):
        server.runner.call_tool({"name": "gated", "arguments": {}, "task": {}}, ctx)
    assert wait_until(lambda: recorded.value("taskstore.runner.running") == 1)
    assert recorded.value("taskstore.runner.queue_depth") == 2
    server.release.set()  # type: ignore[attr-defined]
    assert wait_until(
        lambda: recorded.value("taskstore.runner.running") == 0
        and recorded.value("taskstore.runner.queue_depth") == 0
    )


def test_http_requests_by_method_and_jsonrpc_code(recorded: Recorded, server: McpServer) -> None:
    """http.server.request.duration counts requests by HTTP method, status, MCP method and
    JSON-RPC error code; a method MCP does not define is _OTHER."""
    app = McpWsgiApp(server, loopback_only=True)
    session = open_session(app)
    headers = {"Mcp-Session-Id": session}
    assert call_app(app, body=_rpc("tools/list"), headers=headers).status == 200
    assert call_app(app, body=_rpc("tools/list", id=2), headers=headers).status == 200
    assert call_app(app, body=_rpc("no/such-method"), headers=headers).status == 200
    assert call_app(app, body=_rpc("tools/call", {"name": "nope"}), headers=headers).status == 200
    assert call_app(app, method="GET", path="/healthz").status == 200
    app.close()
    base = {"http__request__method": "POST", "http__response__status_code": 200,
            "url__scheme": "http"}
    name = telemetry.HTTP_SERVER_DURATION
    assert recorded.value(name, **base, mcp__method__name="initialize") == 1
    assert recorded.value(name, **base, mcp__method__name="tools/list") == 2
    assert recorded.value(
        name, **base, mcp__method__name="_OTHER", rpc__response__status_code="-32601"
    ) == 1
    assert recorded.value(
        name, **base, mcp__method__name="tools/call", rpc__response__status_code="-32602"
    ) == 1
    assert recorded.value(
        name, http__request__method="GET", http__response__status_code=200, url__scheme="http"
    ) == 1
    assert recorded.units()[name] == "s"


def test_streamed_responses_are_timed_to_their_end(recorded: Recorded, server: McpServer) -> None:
    """A streamed reply is recorded once its stream ends, not when it starts."""
    app = McpWsgiApp(server, loopback_only=True, keepalive_s=0.05)
    session = open_session(app)
    name = telemetry.HTTP_SERVER_DURATION
    stream = call_app(
        app, method="GET", headers={"Mcp-Session-Id": session, "Accept": "text/event-stream"}
    )
    assert stream.status == 200
    get = {"http__request__method": "GET", "http__response__status_code": 200,
           "url__scheme": "http"}
    next(stream.chunks)
    assert recorded.value(name, **get) == 0  # still open
    stream.chunks.close()  # type: ignore[attr-defined]
    assert recorded.value(name, **get) == 1
    app.close()


SECRETS = ("owner-s3cret", "argument-s3cret", "result-s3cret", "message-s3cret")


def test_no_owner_argument_or_result_in_any_attribute(
    recorded: Recorded, server: McpServer
) -> None:
    """After a full MCP lifecycle over HTTP (authenticated owner, session, tool arguments,
    results, variables, messages) no span or metric attribute holds any of them."""

    @server.tool("secretive", task_support="optional")
    def secretive(arguments: dict[str, Any], ctx: ToolContext) -> str:
        if ctx.task is not None:
            ctx.set_variables({"note": "result-s3cret"})
            ctx.task.set_message("message-s3cret")
        return "result-s3cret " + str(arguments["value"])

    app = McpWsgiApp(
        server, loopback_only=True, authenticate=bearer_authenticator({"tok": "owner-s3cret"})
    )
    auth = {"Authorization": "Bearer tok"}
    session = open_session(app, headers=auth)
    headers = {**auth, "Mcp-Session-Id": session, "Accept": "application/json"}
    arguments = {"value": "argument-s3cret"}
    inline = call_app(
        app, body=_rpc("tools/call", {"name": "secretive", "arguments": arguments}), headers=headers
    )
    assert b"result-s3cret" in inline.body
    created = call_app(
        app,
        body=_rpc(
            "tools/call",
            {"name": "secretive", "arguments": arguments, "task": {}},
            id=2,
        ),
        headers=headers,
    ).json()
    task_id = created["result"]["task"]["taskId"]
    result = call_app(app, body=_rpc("tasks/result", {"taskId": task_id}, id=3), headers=headers)
    assert b"result-s3cret argument-s3cret" in result.body
    call_app(app, body=_rpc("tasks/get", {"taskId": task_id}, id=4), headers=headers)
    call_app(app, body=_rpc("tasks/list", id=5), headers=headers)
    app.close()

    spans = recorded.spans()
    assert {"execute_tool secretive", "taskstore.create", "taskstore.complete"} <= {
        span.name for span in spans
    }
    dumped = msgspec.json.encode(
        [
            {"name": span.name, "attributes": dict(span.attributes or {}),
             "events": [dict(event.attributes or {}) for event in span.events],
             "status": span.status.description}
            for span in spans
        ]
        + [[name, sorted(attrs)] for name, attrs in recorded.points()]
    ).decode()
    for secret in (*SECRETS, session):
        assert secret not in dumped, secret


# -- off switches ------------------------------------------------------------------------------


def test_configure_disabled_records_nothing(recorded: Recorded, store: TaskStore) -> None:
    """configure(enabled=False) turns every call site off, providers or not."""
    telemetry.configure(
        meter_provider=recorded.meter_provider,
        tracer_provider=recorded.tracer_provider,
        enabled=False,
    )
    record = store.create("alice")
    store.complete(record.task_id, "alice", None)
    assert telemetry.active is False
    assert recorded.spans() == ()
    assert recorded.value("taskstore.tasks.created", db__system__name="memory") == 0


def test_without_sdk_nothing_is_recorded_and_the_gate_closes(store: TaskStore) -> None:
    """With the API but no SDK configured (global providers are the API's placeholders), the
    first operation looks once and the hot-path gate closes."""
    telemetry.configure()
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    store.create("alice")
    assert telemetry.active is False
    assert telemetry.current_context() is None


def test_a_failing_sdk_never_breaks_the_store(
    recorded: Recorded, store: TaskStore, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception inside OpenTelemetry is logged once; every operation still succeeds."""
    record = store.create("alice")

    class Broken:
        def record(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("exporter bug")

        add = record

    signals = telemetry._signals
    assert signals is not None
    signals.operation_duration = Broken()
    signals.ended = Broken()
    with caplog.at_level(logging.WARNING, logger="taskstore.telemetry"):
        store.get(record.task_id, "alice")
        store.complete(record.task_id, "alice", 1)
        assert store.get(record.task_id, "alice").status is TaskStatus.COMPLETED
    warnings = [r for r in caplog.records if r.name == "taskstore.telemetry"]
    assert len(warnings) <= 1
    # The spans still ended and the context was restored.
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert [span.name for span in recorded.spans()][-2:] == ["taskstore.complete", "taskstore.get"]
