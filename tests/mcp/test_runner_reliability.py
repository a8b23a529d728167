"""The tool runner under load and faults (issue 15): a fair pool, safe error messages, outcomes
stored across storage failures, abandoned tasks recovered."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import taskstore
from support.mcp import build_server, wait_until
from support.modern import TASKS_EXTENSION, message, params
from taskstore import ManualClock, TaskStatus, TaskStore
from taskstore.backends.memory import InMemoryBackend
from taskstore.errors import BackendError, ConfigurationError, ProtocolError, ToolError
from taskstore.mcp import Caller, McpServer, ToolContext, ToolRunner
from taskstore.mcp.fairness import FairScheduler
from taskstore.mcp.runner import SHUTDOWN_MESSAGE, STALE_MESSAGE, RetryPolicy
from taskstore.mcp.timers import Timers
from taskstore.workflow import SequentialWorkflow, WorkflowEngine, WorkflowStep, const

SECRET = "postgres://admin:hunter2@db.internal"
GENERIC = r"Tool leaky failed unexpectedly \(error id (?P<id>[0-9a-f]{16})\)"
#: Fast retries, so the retry tests take milliseconds.
FAST = RetryPolicy(first_delay_s=0.01, max_delay_s=0.05)
DEADLINE_S = 10.0


# -- helpers ---------------------------------------------------------------------------------


def rpc(server: McpServer, caller: Caller, method: str, body: Any, id: int = 1) -> Any:  # noqa: A002
    """One 2025-11-25 request through ``McpServer.handle``; the full response."""
    return server.handle(
        {"jsonrpc": "2.0", "id": id, "method": method, "params": body}, caller=caller
    )


def start_task(server: McpServer, caller: Caller, name: str, arguments: Any = None) -> str:
    """A task-augmented tools/call through ``handle``; the created task's id."""
    body = {"name": name, "arguments": arguments or {}, "task": {}}
    return str(rpc(server, caller, "tools/call", body)["result"]["task"]["taskId"])


def run_task(
    runner: ToolRunner, caller: Caller, name: str, arguments: Any = None, ttl: int | None = None
) -> str:
    """A task-augmented call straight to ``runner``; the created task's id."""
    task = {} if ttl is None else {"ttl": ttl}
    body = {"name": name, "arguments": arguments or {}, "task": task}
    return str(runner.call(body, caller)["task"]["taskId"])


class FlakyBackend:
    """An in-memory backend whose outcome writes (``put_if_version`` carrying an outcome) fail
    with ``BackendError`` on demand: the first ``fail_first`` of them, every one for a task in
    ``failing``; with ``apply_then_fail`` a failing write is applied first (a lost reply)."""

    def __init__(self, fail_first: int = 0, *, apply_then_fail: bool = False) -> None:
        self.inner = InMemoryBackend()
        self.fail_first = fail_first
        self.apply_then_fail = apply_then_fail
        self.failing: set[str] = set()
        self.outcome_attempts: list[str] = []
        self.failed = threading.Event()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_if_version(self, key: Any, data: bytes, expected: int, *args: Any, **kw: Any) -> int:
        if kw.get("outcome") is None:
            return self.inner.put_if_version(key, data, expected, *args, **kw)
        with self._lock:
            self.outcome_attempts.append(key[1])
            fail = key[1] in self.failing or self.fail_first > 0
            if fail and key[1] not in self.failing:
                self.fail_first -= 1
        if not fail:
            return self.inner.put_if_version(key, data, expected, *args, **kw)
        if self.apply_then_fail:
            self.inner.put_if_version(key, data, expected, *args, **kw)
        self.failed.set()
        raise BackendError("connection reset by peer (redis://:s3cret@cache:6379)")


def flaky_store(backend: FlakyBackend, clock: ManualClock | None = None) -> TaskStore:
    """A store over ``backend`` (20 ms poll interval)."""
    return TaskStore(
        backend,  # type: ignore[arg-type]  # duck-typed wrapper of InMemoryBackend
        config=taskstore.StoreConfig(poll_interval_ms=20),
        clock=clock,
    )


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    """The ``taskstore.mcp`` records at exactly ``level`` whose message contains ``text``."""
    return [
        r
        for r in caplog.records
        if r.name == "taskstore.mcp" and r.levelno == level and text in r.getMessage()
    ]


def error_id(record: logging.LogRecord) -> str:
    """The error id a log record carries (``record.error_id``)."""
    return str(getattr(record, "error_id", ""))


@pytest.fixture
def default_server(mstore: TaskStore) -> Iterator[McpServer]:
    """A server with ``McpServer``'s defaults (as ``serve`` builds it: 16 workers), the test
    tools, and ``long`` (records its start, then ctx.sleeps until cancelled) and ``leaky``
    (raises an exception whose text holds a password)."""
    server = build_server(mstore)
    started: list[int] = []
    server.started = started  # type: ignore[attr-defined]

    @server.tool("long", task_support="optional")
    def long(arguments: dict[str, Any], ctx: ToolContext) -> str:
        started.append(arguments["i"])
        return "cancelled" if ctx.sleep(300) else "done"

    @server.tool("leaky", task_support="optional")
    def leaky(arguments: dict[str, Any], ctx: ToolContext) -> str:
        raise RuntimeError(f"could not connect to {SECRET}")

    yield server
    server.release.set()  # type: ignore[attr-defined]
    server.close()


# -- fair and bounded ------------------------------------------------------------------------


def test_default_cap_leaves_three_quarters_of_the_pool_to_others(mstore: TaskStore) -> None:
    """The per-owner cap defaults to max(1, max_workers // 4): 4 of serve's 16 workers."""
    servers = [McpServer(mstore), McpServer(mstore, max_workers=2)]
    servers.append(McpServer(mstore, max_workers=8, max_running_per_owner=8))
    try:
        assert [s.runner.max_running_per_owner for s in servers] == [4, 1, 8]
    finally:
        for server in servers:
            server.close()


@pytest.mark.parametrize(("workers", "cap"), [(0, None), (4, 0), (4, True), (2.5, None)])
def test_bad_pool_sizes_are_configuration_errors(workers: Any, cap: Any) -> None:
    """A pool or per-owner cap below 1 (or not an integer) is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        FairScheduler(workers, cap)


def test_one_owners_flood_does_not_starve_another_owner(
    default_server: McpServer, mstore: TaskStore, alice: Caller, bob: Caller
) -> None:
    """With the default 16 workers, 16 long tasks of alice leave room for bob: his quick task
    completes within seconds while alice's are all still working, and alice's queued tasks
    start in the order she sent them as her slots free."""
    server = default_server
    started: list[int] = server.started  # type: ignore[attr-defined]
    flood = [start_task(server, alice, "long", {"i": i}) for i in range(16)]
    assert wait_until(lambda: len(started) == 4, timeout=DEADLINE_S)

    began = time.monotonic()
    quick = start_task(server, bob, "echo", {"text": "hi"})
    assert mstore.wait(quick, "bob", timeout=5).status is TaskStatus.COMPLETED
    assert time.monotonic() - began < 5
    assert mstore.get_result(quick, "bob").result["content"] == [{"type": "text", "text": "hi"}]
    statuses = [rpc(server, alice, "tasks/get", {"taskId": t})["result"]["status"] for t in flood]
    assert statuses == ["working"] * 16
    # The first four start at once, on four threads: in any order among themselves.
    assert sorted(started) == [0, 1, 2, 3]
    assert wait_until(lambda: server.runner.running() == 16, timeout=DEADLINE_S)  # bob's left

    # Each cancel frees one of alice's slots: her next queued task, in order, takes it.
    for done in range(12):
        rpc(server, alice, "tasks/cancel", {"taskId": flood[done]})
        assert wait_until(lambda n=done: len(started) == 5 + n, timeout=DEADLINE_S)
    assert started[4:] == list(range(4, 16))
    for task_id in flood[12:]:
        rpc(server, alice, "tasks/cancel", {"taskId": task_id})
    assert wait_until(lambda: server.runner.running() == 0, timeout=DEADLINE_S)


def test_a_full_pool_serves_the_owner_with_fewest_running_first(
    mstore: TaskStore, alice: Caller, bob: Caller
) -> None:
    """With every worker busy, a freed worker goes to a waiting owner with nothing running
    (bob) before the owner whose calls fill the pool (alice), whatever the arrival order."""
    server = build_server(mstore, max_workers=2, max_running_per_owner=2)
    gates = {name: threading.Event() for name in ("a0", "a1", "a2", "b0")}
    started: list[str] = []

    @server.tool("gate", task_support="required")
    def gate(arguments: dict[str, Any], ctx: ToolContext) -> str:
        started.append(arguments["name"])
        gates[arguments["name"]].wait(DEADLINE_S)
        return arguments["name"]

    try:
        tasks = {n: start_task(server, alice, "gate", {"name": n}) for n in ("a0", "a1", "a2")}
        tasks["b0"] = start_task(server, bob, "gate", {"name": "b0"})
        assert wait_until(lambda: sorted(started) == ["a0", "a1"], timeout=DEADLINE_S)
        gates["a0"].set()
        assert wait_until(lambda: len(started) == 3, timeout=DEADLINE_S)
        assert started[2] == "b0"
        gates["a1"].set()
        assert wait_until(lambda: len(started) == 4, timeout=DEADLINE_S)
        assert started[3] == "a2"
        for event in gates.values():
            event.set()
        owners = {"a0": "alice", "a1": "alice", "a2": "alice", "b0": "bob"}
        for name, task_id in tasks.items():
            assert mstore.wait(task_id, owners[name], timeout=DEADLINE_S).status.value == (
                "completed"
            )
    finally:
        server.close()


def test_cancel_of_a_queued_task_never_starts_it(
    default_server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """A task queued behind its owner's cap and cancelled leaves the queue at once and its tool
    never runs, even after slots free."""
    server = default_server
    started: list[int] = server.started  # type: ignore[attr-defined]
    tasks = [start_task(server, alice, "long", {"i": i}) for i in range(5)]
    assert wait_until(lambda: len(started) == 4, timeout=DEADLINE_S)
    assert server.runner.running() == 5

    reply = rpc(server, alice, "tasks/cancel", {"taskId": tasks[4]})
    assert reply["result"]["status"] == "cancelled"
    assert wait_until(lambda: server.runner.running() == 4, timeout=DEADLINE_S)
    for task_id in tasks[:4]:
        rpc(server, alice, "tasks/cancel", {"taskId": task_id})
    assert wait_until(lambda: server.runner.running() == 0, timeout=DEADLINE_S)
    assert sorted(started) == [0, 1, 2, 3]
    assert mstore.get(tasks[4], "alice").status is TaskStatus.CANCELLED


def test_a_call_started_at_once_reads_nothing_before_its_outcome(
    default_server: McpServer, mstore: TaskStore, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call whose tool starts at once is not read back before the tool runs, and its outcome
    is written against the record create returned: from the call to the stored outcome the
    task is never read."""
    server = default_server
    reads: list[object] = []
    real = mstore.backend.get
    monkeypatch.setattr(
        mstore.backend, "get", lambda *a, **k: (reads.append(a[0]), real(*a, **k))[1]
    )
    task_id = start_task(server, alice, "echo", {"text": "hi"})
    assert wait_until(lambda: server.runner.running() == 0, timeout=DEADLINE_S)
    assert reads == []
    assert mstore.get_result(task_id, "alice").result["content"][0]["text"] == "hi"


def test_a_call_queued_long_is_checked_against_the_store_before_it_starts(
    default_server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """A call that waited in the queue is checked against the store before its tool starts:
    cancelled there while no event reached this runner (as from another process on a backend
    without cross-process events), it never starts."""
    server = default_server
    started: list[int] = server.started  # type: ignore[attr-defined]
    runner = server.runner
    runner._ensure_subscribed()
    assert runner._unsubscribe is not None
    runner._unsubscribe()  # this runner hears of no status change from now on
    tasks = [start_task(server, alice, "long", {"i": i}) for i in range(5)]
    assert wait_until(lambda: len(started) == 4, timeout=DEADLINE_S)
    mstore.cancel(tasks[4], "alice")  # unheard: the queued job stays queued
    time.sleep(0.1)  # past the recheck threshold (0.05 s) before a slot frees
    for task_id in tasks[:4]:
        mstore.cancel(task_id, "alice")  # the running tools see it through ctx.cancelled
    assert wait_until(lambda: server.runner.running() == 0, timeout=DEADLINE_S)
    assert sorted(started) == [0, 1, 2, 3]


def test_close_fails_queued_tasks_without_starting_them(
    mstore: TaskStore, alice: Caller
) -> None:
    """Closing the server fails a queued task with the shutdown message; its tool never runs."""
    server = build_server(mstore, max_workers=1)
    started: list[str] = []

    @server.tool("hold", task_support="required")
    def hold(arguments: dict[str, Any], ctx: ToolContext) -> str:
        started.append(arguments["name"])
        ctx.sleep(DEADLINE_S)
        return "done"

    first = start_task(server, alice, "hold", {"name": "first"})
    queued = start_task(server, alice, "hold", {"name": "queued"})
    assert wait_until(lambda: started == ["first"], timeout=DEADLINE_S)
    server.close()
    for task_id in (first, queued):
        record = mstore.get(task_id, "alice")
        assert (record.status, record.task.status_message) == (TaskStatus.FAILED, SHUTDOWN_MESSAGE)
    assert started == ["first"]


def test_scheduler_discard_only_removes_waiting_jobs() -> None:
    """FairScheduler.discard removes a waiting job (True) and refuses a running or unknown one."""
    scheduler = FairScheduler(1, 1)
    running = threading.Event()
    release = threading.Event()
    ran: list[str] = []

    def job(name: str) -> None:
        ran.append(name)
        running.set()
        release.wait(DEADLINE_S)

    try:
        scheduler.submit("alice", "one", lambda: job("one"))
        scheduler.submit("alice", "two", lambda: job("two"))
        assert running.wait(DEADLINE_S)
        assert (scheduler.running(), scheduler.queued()) == (1, 1)
        assert [scheduler.discard("one"), scheduler.discard("two"), scheduler.discard("x")] == [
            False,
            True,
            False,
        ]
        release.set()
        assert wait_until(lambda: scheduler.running() == 0, timeout=DEADLINE_S)
        assert ran == ["one"]
    finally:
        release.set()
        scheduler.close()


# -- errors are safe by default ---------------------------------------------------------------


def test_unexpected_exception_reaches_the_wire_as_a_generic_message_with_an_id(
    default_server: McpServer, mstore: TaskStore, alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """A tool exception holding a password reaches the client only as "Tool leaky failed
    unexpectedly (error id …)" (inline -32603, the task's statusMessage and its tasks/result
    error); the full exception is logged once at ERROR with the same id."""
    server = default_server
    with caplog.at_level(logging.ERROR, logger="taskstore.mcp"):
        inline = rpc(server, alice, "tools/call", {"name": "leaky", "arguments": {}}, id=1)
        task_id = start_task(server, alice, "leaky")
        mstore.wait(task_id, "alice", timeout=DEADLINE_S)
        got = rpc(server, alice, "tasks/get", {"taskId": task_id}, id=2)
        result = rpc(server, alice, "tasks/result", {"taskId": task_id}, id=3)

    assert inline["error"]["code"] == -32603
    inline_id = re.fullmatch(GENERIC, inline["error"]["message"])
    assert inline_id is not None
    task_message = got["result"]["statusMessage"]
    task_id_match = re.fullmatch(GENERIC, task_message)
    assert task_id_match is not None
    assert got["result"]["status"] == "failed"
    assert result["error"] == {"code": -32603, "message": task_message}
    assert inline_id["id"] != task_id_match["id"]
    wire = json.dumps([inline, got, result])
    assert "hunter2" not in wire and "postgres" not in wire and "RuntimeError" not in wire

    logged = [r for r in caplog.records if r.name == "taskstore.mcp" and r.levelno >= logging.ERROR]
    assert [error_id(r) for r in logged] == [inline_id["id"], task_id_match["id"]]
    for record in logged:
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None and SECRET in str(record.exc_info[1])
        assert error_id(record) in record.getMessage()
    assert task_id in logged[1].getMessage()


def test_every_failure_gets_its_own_error_id(
    default_server: McpServer, alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """Three failures of the same tool carry three different error ids, each logged once."""
    ids = []
    with caplog.at_level(logging.ERROR, logger="taskstore.mcp"):
        for _ in range(3):
            with pytest.raises(ProtocolError) as caught:
                default_server.runner.call({"name": "leaky", "arguments": {}}, alice)
            match = re.fullmatch(GENERIC, caught.value.message)
            assert match is not None
            ids.append(match["id"])
    assert len(set(ids)) == 3
    logged = [error_id(r) for r in caplog.records if r.name == "taskstore.mcp"]
    assert logged == ids


def test_modern_task_failure_is_generic_too(
    default_server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """A task created in MCP 2026-07-28 (tasks extension) fails with the same generic message
    on tasks/get, and no password reaches the wire."""
    server = default_server
    capabilities = {"extensions": {TASKS_EXTENSION: {}}}
    created = server.handle(
        message("tools/call", params({"name": "leaky", "arguments": {}}, capabilities)),
        caller=alice,
    )
    assert created is not None
    task_id = created["result"]["taskId"]
    mstore.wait(task_id, "alice", timeout=DEADLINE_S)
    got = server.handle(
        message("tasks/get", params({"taskId": task_id}, capabilities), id=2), caller=alice
    )
    assert got is not None
    assert got["result"]["status"] == "failed"
    assert re.fullmatch(GENERIC, got["result"]["statusMessage"])
    assert got["result"]["error"] == {"code": -32603, "message": got["result"]["statusMessage"]}
    assert "hunter2" not in json.dumps(got)


def test_expose_tool_errors_shows_raw_messages(
    mstore: TaskStore, alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """With expose_tool_errors=True (development) the exception's own text reaches the client
    inline and in the task, and the exception is still logged."""
    server = build_server(mstore, expose_tool_errors=True)
    raw = "Tool crash failed: RuntimeError: boom"
    try:
        with caplog.at_level(logging.ERROR, logger="taskstore.mcp"):
            inline = rpc(server, alice, "tools/call", {"name": "crash", "arguments": {}})
            task_id = start_task(server, alice, "crash")
            record = mstore.wait(task_id, "alice", timeout=DEADLINE_S)
        assert inline["error"] == {"code": -32603, "message": raw}
        assert record.task.status_message == raw
        assert mstore.get_result(task_id, "alice").error == {"code": -32603, "message": raw}
        assert len([r for r in caplog.records if r.name == "taskstore.mcp"]) == 2
    finally:
        server.close()


def test_tool_error_and_protocol_error_texts_are_shown(
    mstore: TaskStore, alice: Caller
) -> None:
    """A tool that means its message raises ToolError (an isError result with its text) or a
    ProtocolError (that JSON-RPC error), and the client gets those texts unchanged."""
    server = build_server(mstore)

    @server.tool("refuses", task_support="optional")
    def refuses(arguments: dict[str, Any], ctx: ToolContext) -> str:
        if arguments.get("protocol"):
            raise ProtocolError(-32602, "region must be eu or us")
        raise ToolError("the upstream API quota is spent")

    try:
        tool_error = rpc(server, alice, "tools/call", {"name": "refuses", "arguments": {}})
        assert tool_error["result"] == {
            "content": [{"type": "text", "text": "the upstream API quota is spent"}],
            "isError": True,
        }
        protocol = rpc(
            server, alice, "tools/call", {"name": "refuses", "arguments": {"protocol": True}}
        )
        assert protocol["error"] == {"code": -32602, "message": "region must be eu or us"}
        task_id = start_task(server, alice, "refuses", {"protocol": True})
        record = mstore.wait(task_id, "alice", timeout=DEADLINE_S)
        assert record.task.status_message == "region must be eu or us"
    finally:
        server.close()


def test_long_tool_texts_are_cut_to_the_status_message_cap(alice: Caller) -> None:
    """A ToolError text longer than the store's statusMessage cap is cut to fit (so the outcome
    is stored, not refused), the full text kept in the isError result."""
    with taskstore.open("memory://", max_status_message_bytes=40) as store:
        server = build_server(store)

        @server.tool("wordy", task_support="required")
        def wordy(arguments: dict[str, Any], ctx: ToolContext) -> str:
            raise ToolError("é" * 100)

        try:
            task_id = start_task(server, alice, "wordy")
            record = store.wait(task_id, "alice", timeout=DEADLINE_S)
            assert record.status is TaskStatus.FAILED
            assert record.task.status_message == "é" * 18 + "…"
            result = store.get_result(task_id, "alice").result
            assert result["content"][0]["text"] == "é" * 100
        finally:
            server.close()


class _RaisingTools:
    """A workflow tool invoker whose one tool raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def required_fields(self, tool: str) -> list[str]:
        return []

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        raise self.error


def _paused_error(store: TaskStore, error: Exception) -> str:
    workflow = SequentialWorkflow("w", "one step", [WorkflowStep("only", "leaky", {"a": const(1)})])
    run = WorkflowEngine(workflow, store, _RaisingTools(error)).start("alice", {})
    assert run.pause_reason is not None and run.pause_reason["type"] == "toolError"
    return str(run.pause_reason["error"])


def test_workflow_tool_error_pause_reason_is_generic(
    mstore: TaskStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The workflow engine's toolError pause reason follows the same policy: a generic message
    with an error id for an unexpected exception (logged with that id), and the storage-safe
    text for a BackendError."""
    with caplog.at_level(logging.ERROR, logger="taskstore.workflow"):
        error = _paused_error(mstore, RuntimeError(f"could not connect to {SECRET}"))
    match = re.fullmatch(GENERIC, error)
    assert match is not None
    logged = [r for r in caplog.records if r.name == "taskstore.workflow"]
    assert [error_id(r) for r in logged] == [match["id"]]
    assert logged[0].exc_info is not None and SECRET in str(logged[0].exc_info[1])
    storage = _paused_error(mstore, BackendError(f"timeout talking to {SECRET}"))
    assert storage == "Internal error: the task storage failed"


# -- results are never lost ---------------------------------------------------------------------


def test_result_is_stored_after_backend_failures(
    alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """A result whose first three writes fail with BackendError is stored by the retries, with
    one WARNING for the failure sequence and one INFO when it is stored."""
    backend = FlakyBackend(fail_first=3)
    store = flaky_store(backend)
    server = build_server(store)
    server.runner.close()
    runner = ToolRunner(store, server.tools, result_retry=FAST)
    try:
        with caplog.at_level(logging.DEBUG, logger="taskstore.mcp"):
            task_id = run_task(runner, alice, "echo", {"text": "kept"})
            record = store.wait(task_id, "alice", timeout=DEADLINE_S)
            assert wait_until(lambda: runner.pending_results() == 0, timeout=DEADLINE_S)
            # The last attempt is no longer pending while it runs: its INFO line may follow
            # the write the wait saw by a moment.
            assert wait_until(lambda: records(caplog, logging.INFO, task_id), timeout=DEADLINE_S)
        assert record.status is TaskStatus.COMPLETED
        assert store.get_result(task_id, "alice").result == {
            "content": [{"type": "text", "text": "kept"}],
            "isError": False,
        }
        assert backend.outcome_attempts == [task_id] * 4
        assert len(records(caplog, logging.WARNING, task_id)) == 1
        assert len(records(caplog, logging.DEBUG, f"to store the outcome of task {task_id}")) == 2
        stored = records(caplog, logging.INFO, task_id)
        assert [r.getMessage() for r in stored] == [
            f"stored the outcome of task {task_id} after 3 failed attempts"
        ]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        runner.close()
        store.close()


def test_failure_outcome_is_retried_too(alice: Caller) -> None:
    """The failed outcome of a crashing tool is retried like a result and stored."""
    backend = FlakyBackend(fail_first=2)
    store = flaky_store(backend)
    server = build_server(store)
    server.runner.close()
    runner = ToolRunner(store, server.tools, result_retry=FAST)
    try:
        task_id = run_task(runner, alice, "crash")
        record = store.wait(task_id, "alice", timeout=DEADLINE_S)
        assert record.status is TaskStatus.FAILED
        generic = r"Tool crash failed unexpectedly \(error id [0-9a-f]{16}\)"
        assert re.fullmatch(generic, record.task.status_message or "")
        assert len(backend.outcome_attempts) == 3
    finally:
        runner.close()
        store.close()


def test_a_lost_reply_is_not_a_lost_result(
    alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """A completion applied but answered with BackendError is retried, and the retry succeeds
    (completing again with the same outcome is idempotent): the task ends completed with the
    tool's result, one WARNING and one INFO are logged, no ERROR."""
    backend = FlakyBackend(fail_first=1, apply_then_fail=True)
    store = flaky_store(backend)
    server = build_server(store)
    server.runner.close()
    runner = ToolRunner(store, server.tools, result_retry=FAST)
    try:
        with caplog.at_level(logging.DEBUG, logger="taskstore.mcp"):
            task_id = run_task(runner, alice, "echo", {"text": "once"})
            assert wait_until(lambda: records(caplog, logging.INFO, task_id), timeout=DEADLINE_S)
        assert [r.getMessage() for r in records(caplog, logging.INFO, task_id)] == [
            f"stored the outcome of task {task_id} after 1 failed attempts"
        ]
        assert runner.pending_results() == 0
        assert store.get(task_id, "alice").status is TaskStatus.COMPLETED
        assert store.get_result(task_id, "alice").result["content"][0]["text"] == "once"
        assert len(records(caplog, logging.WARNING, task_id)) == 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        runner.close()
        store.close()


def test_retries_do_not_hold_a_pool_worker(alice: Caller, bob: Caller) -> None:
    """While one outcome waits for the storage, the single pool worker runs the next call; the
    waiting outcome is stored once the storage answers again."""
    backend = FlakyBackend()
    store = flaky_store(backend)
    server = build_server(store)
    server.runner.close()
    runner = ToolRunner(store, server.tools, max_workers=1, result_retry=FAST)
    try:
        first_id = run_task(runner, alice, "gated")
        backend.failing = {first_id}
        server.release.set()  # type: ignore[attr-defined]
        assert backend.failed.wait(DEADLINE_S)
        assert wait_until(lambda: runner.pending_results() == 1, timeout=DEADLINE_S)
        second_id = run_task(runner, bob, "echo", {"text": "b"})
        assert store.wait(second_id, "bob", timeout=DEADLINE_S).status is TaskStatus.COMPLETED
        assert store.get(first_id, "alice").status is TaskStatus.WORKING
        backend.failing = set()
        assert store.wait(first_id, "alice", timeout=DEADLINE_S).status is TaskStatus.COMPLETED
        assert runner.pending_results() == 0
    finally:
        runner.close()
        store.close()


def test_retries_stop_when_the_task_expires(
    alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """An outcome the storage never takes is retried until the task expires, then given up
    with one ERROR (one WARNING before it), and nothing is left pending."""
    clock = ManualClock()
    backend = FlakyBackend()
    store = flaky_store(backend, clock)
    server = build_server(store)
    server.runner.close()
    runner = ToolRunner(store, server.tools, result_retry=FAST)
    try:
        with caplog.at_level(logging.WARNING, logger="taskstore.mcp"):
            task_id = run_task(runner, alice, "gated", ttl=5_000)
            backend.failing = {task_id}
            server.release.set()  # type: ignore[attr-defined]
            assert backend.failed.wait(DEADLINE_S)
            clock.advance(6_000)
            assert wait_until(lambda: runner.pending_results() == 0, timeout=DEADLINE_S)
            assert wait_until(lambda: records(caplog, logging.ERROR, task_id), timeout=DEADLINE_S)
        assert len(records(caplog, logging.WARNING, task_id)) == 1
        assert [r.getMessage().split(":")[0] for r in records(caplog, logging.ERROR, task_id)] == [
            f"gave up storing the outcome of task {task_id}"
        ]
    finally:
        runner.close()
        store.close()


def test_close_gives_up_pending_outcomes_with_a_warning(
    alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing the runner stops the retries of an outcome still pending and logs it."""
    backend = FlakyBackend()
    store = flaky_store(backend)
    server = build_server(store)
    server.runner.close()
    runner = ToolRunner(store, server.tools, result_retry=FAST)
    try:
        with caplog.at_level(logging.WARNING, logger="taskstore.mcp"):
            task_id = run_task(runner, alice, "gated")
            backend.failing = {task_id}
            server.release.set()  # type: ignore[attr-defined]
            assert wait_until(lambda: runner.pending_results() == 1, timeout=DEADLINE_S)
            runner.close()
        assert runner.pending_results() == 0
        closing = f"shutting down without the outcome of task {task_id}"
        assert len(records(caplog, logging.WARNING, closing)) == 1
    finally:
        runner.close()
        store.close()


# -- stale tasks -----------------------------------------------------------------------------


class NoScanBackend:
    """An in-memory backend without the scan capability (``ScanningBackend``)."""

    def __init__(self) -> None:
        self.inner = InMemoryBackend()

    def __getattr__(self, name: str) -> Any:
        if name == "scan":
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_recovery_fails_abandoned_tasks_and_spares_heartbeated_ones(
    store: TaskStore, clock: ManualClock, alice: Caller
) -> None:
    """On every backend: the tools/call tasks of a process that died (one created and left
    working, one whose runner never heartbeats) are failed by another runner's recovery pass
    with STALE_MESSAGE, and the dead runner's tool is told to stop; the live runner's own task,
    heartbeated, and a stale task that is not a tool call stay working."""
    server = build_server(store)
    server.runner.close()
    dead_runner = ToolRunner(store, server.tools)  # "died": it never heartbeats
    live_runner = ToolRunner(store, server.tools)
    try:
        created = store.create("alice", "tools/call", request={"name": "echo", "arguments": {}})
        orphaned = run_task(dead_runner, alice, "wait_for_cancel")
        prompt = store.create("alice", "prompts/get")
        live = run_task(live_runner, alice, "wait_for_cancel")
        clock.advance(10_000)
        assert live_runner.heartbeat() == 1
        assert live_runner.recover_stale(older_than_ms=5_000) == 2
        for task_id in (created.task_id, orphaned):
            record = store.get(task_id, "alice")
            assert (record.status, record.task.status_message) == (
                TaskStatus.FAILED,
                STALE_MESSAGE,
            )
            assert store.get_result(task_id, "alice").error == {
                "code": -32603,
                "message": STALE_MESSAGE,
            }
        assert store.get(live, "alice").status is TaskStatus.WORKING
        assert store.get(prompt.task_id, "alice").status is TaskStatus.WORKING
        assert wait_until(lambda: dead_runner.running() == 0, timeout=DEADLINE_S)
        assert live_runner.running() == 1
        assert live_runner.recover_stale(older_than_ms=5_000) == 0
    finally:
        dead_runner.close()
        live_runner.close()
        server.close()


def test_stale_recovery_runs_by_itself_when_configured(
    server: McpServer, mstore: TaskStore, mclock: ManualClock, alice: Caller
) -> None:
    """With stale_after_ms the runner runs a recovery pass at start (failing a task abandoned
    before it started) and heartbeats its running tasks on its own."""
    dead = mstore.create("alice", "tools/call")
    mclock.advance(5_000)
    runner = ToolRunner(mstore, server.tools, stale_after_ms=1_000)
    try:
        assert wait_until(
            lambda: mstore.get(dead.task_id, "alice").status is TaskStatus.FAILED,
            timeout=DEADLINE_S,
        )
        assert mstore.get(dead.task_id, "alice").task.status_message == STALE_MESSAGE
        task_id = run_task(runner, alice, "wait_for_cancel")
        before = mstore.get(task_id, "alice").task.last_updated_at
        # Less than stale_after_ms: no pass may fail it whether or not a heartbeat ran first.
        mclock.advance(500)
        assert wait_until(
            lambda: mstore.get(task_id, "alice").task.last_updated_at != before,
            timeout=DEADLINE_S,
        )
        assert mstore.get(task_id, "alice").status is TaskStatus.WORKING
    finally:
        runner.close()


def test_heartbeat_skips_tasks_that_ended_quietly(
    server: McpServer, mstore: TaskStore, alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """A task the runner still holds but whose record is gone (deleted here; expired or
    finished elsewhere alike) is skipped by the heartbeat: not counted, no warning."""
    runner = ToolRunner(mstore, server.tools)
    try:
        task_id = run_task(runner, alice, "wait_for_cancel")
        with caplog.at_level(logging.WARNING, logger="taskstore.mcp"):
            mstore.backend.delete(("alice", task_id))
            assert runner.heartbeat() == 0
        assert not records(caplog, logging.WARNING, "heartbeat")
    finally:
        runner.close()


def test_bad_stale_after_is_a_configuration_error(
    server: McpServer, mstore: TaskStore, mclock: ManualClock
) -> None:
    """stale_after_ms below one second is refused; recover_stale without an age is refused;
    recovery on a backend that cannot scan across owners is refused up front, naming it."""
    with pytest.raises(ConfigurationError):
        ToolRunner(mstore, server.tools, stale_after_ms=500)
    runner = ToolRunner(mstore, server.tools)
    try:
        with pytest.raises(ConfigurationError):
            runner.recover_stale()
    finally:
        runner.close()
    with TaskStore(NoScanBackend(), clock=mclock) as noscan:  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match=r"NoScanBackend.*ScanningBackend"):
            ToolRunner(noscan, server.tools, stale_after_ms=60_000)
        runner = ToolRunner(noscan, server.tools)
        try:
            with pytest.raises(ConfigurationError, match="NoScanBackend"):
                runner.recover_stale(older_than_ms=1_000)
        finally:
            runner.close()


def test_a_task_failed_elsewhere_stops_its_tool(
    server: McpServer, mstore: TaskStore, alice: Caller
) -> None:
    """A running task failed by someone else (e.g. another process's recovery pass) wakes its
    tool's ctx.sleep, as a cancel does, and keeps the failure."""
    task_id = run_task(server.runner, alice, "wait_for_cancel")
    assert wait_until(lambda: server.runner.running() == 1, timeout=DEADLINE_S)
    mstore.fail(task_id, "alice", message=STALE_MESSAGE)
    assert wait_until(lambda: server.runner.running() == 0, timeout=DEADLINE_S)
    assert mstore.get(task_id, "alice").task.status_message == STALE_MESSAGE


# -- the timer thread ----------------------------------------------------------------------------


def test_timers_run_callbacks_in_due_order_and_close_drops_the_rest() -> None:
    """Timers runs callbacks earliest-due first, survives one that raises, and drops what is
    pending on close."""
    timers = Timers("test-timers")
    ran: list[str] = []
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("ignored")

    try:
        timers.call_later(0.05, lambda: (ran.append("late"), done.set()))
        timers.call_later(0.0, boom)
        timers.call_later(0.01, lambda: ran.append("early"))
        timers.call_later(60, lambda: ran.append("never"))
        assert done.wait(DEADLINE_S)
        assert ran == ["early", "late"]
        assert timers.pending() == 1
    finally:
        timers.close()
    assert timers.pending() == 0
    with pytest.raises(RuntimeError):
        timers.call_later(0, lambda: None)
