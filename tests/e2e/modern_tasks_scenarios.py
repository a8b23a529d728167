"""Scenarios of the tasks extension (SEP-2663) driven by real clients, each in its own venv.

Usage: ``python modern_tasks_scenarios.py SCENARIO URL [TOKEN [BARRIER_DIR]]``. Prints one
JSON object of observations on stdout; the pytest side (tests/e2e/test_modern_tasks.py) asserts
on it. This file imports nothing from taskstore, and each scenario imports its client lazily,
because the scenarios run under two interpreters:

- FastMCP's venv (``fastmcp==4.1.4`` + ``fastmcp-tasks==4.1.4`` on ``mcp==2.3.0``,
  .ci/setup-modern-client.sh), MCP 2026-07-28. Importing ``fastmcp_tasks`` makes every
  ``Client`` declare the tasks extension and resolve ``CreateTaskResult`` by polling
  ``tasks/get``; ``fastmcp_tasks.call_tool_task`` returns a ``ToolTask`` handle instead.

  - ``lifecycle`` (examples/conformance_server.py): every outcome through ``ToolTask``
    (``status``/``wait``/``result``/``cancel``) and through ``client.call_tool``, which answers
    input through its elicitation handler (``tasks/update``), plus the SEP-2322 round before a
    task (``test_tool_with_task``). ``multi_input`` is answered one key at a time with the
    extension's own ``UpdateTaskRequest`` (``ToolTask`` only answers every key at once).
  - ``modern_side URL TOKEN BARRIER_DIR`` (tests/e2e/tasks_store_server.py --auth): a task
    completed, one answered through the elicitation handler, one with an ``isError`` result,
    while the legacy client below works on the same server (both connect, then meet at the
    barrier before their first call).
  - ``demo_tools`` (examples/wsgi_app.py under gunicorn, tests/e2e/test_gunicorn.py): the
    demo tools of ``taskstore serve``, a task awaited and fetched.

- The official ``mcp<2`` venv (.ci/setup-mcp-client.sh), MCP 2025-11-25 sessions:

  - ``legacy_side URL TOKEN BARRIER_DIR``: tasks completed, failed by an ``isError`` result,
    failed by a JSON-RPC error, answered through ``tasks/result``'s elicitation, and one left
    running.
  - ``legacy_start URL [TOKEN]``: one long task left running.

What the FastMCP client sends and receives is also recorded on the wire, through httpx2 event
hooks on the transport's HTTP client: each POST's method, ``Mcp-Name`` header, JSON-RPC id and
the response status and body (JSON bodies of ``tools/call`` and ``tasks/*`` only).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

warnings.simplefilter("ignore")

#: What the elicitation handlers answer, by the property the requested schema asks for.
ANSWERS: dict[str, Any] = {"name": "Ada", "confirm": True}
#: Methods whose response bodies the wire log keeps.
RECORDED = ("tools/call", "tasks/get", "tasks/update", "tasks/cancel")


async def barrier(directory: str | None, role: str) -> float:
    """Mark ``role`` connected in ``directory`` and wait until both sides are (at most 60 s);
    return the wall-clock time the wait ended."""
    from pathlib import Path

    if directory:
        (Path(directory) / role).touch()
        deadline = time.monotonic() + 60
        while len(list(Path(directory).iterdir())) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the other client never connected")
            await asyncio.sleep(0.02)
    return time.time()


# -- FastMCP (MCP 2026-07-28) ----------------------------------------------------------------


class Wire:
    """Every POST of one FastMCP client: method, routing headers, status, recorded body."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []

    async def on_response(self, response: Any) -> None:
        request = response.request
        decoded: Any = json.loads(request.content) if request.content else None
        body: dict[str, Any] = decoded if isinstance(decoded, dict) else {}
        params = body.get("params") or {}
        method = body.get("method")
        reply = None
        if method in RECORDED and "json" in response.headers.get("content-type", ""):
            await response.aread()
            reply = json.loads(response.content)
        self.exchanges.append(
            {
                "method": method,
                "id": body.get("id"),
                "name": params.get("name"),
                "taskId": params.get("taskId"),
                "headerName": request.headers.get("mcp-name"),
                "inputResponses": sorted(params.get("inputResponses") or {}),
                "requestState": "requestState" in params,
                "declaresTasks": "io.modelcontextprotocol/tasks"
                in (
                    (params.get("_meta") or {}).get("io.modelcontextprotocol/clientCapabilities")
                    or {}
                ).get("extensions", {}),
                "status": response.status_code,
                "reply": reply,
            }
        )

    def factory(self, **options: Any) -> Any:
        """The transport's ``httpx_client_factory``: a plain client with the hook."""
        import httpx2

        options.setdefault("timeout", httpx2.Timeout(30.0, read=120.0))
        return httpx2.AsyncClient(**options, event_hooks={"response": [self.on_response]})

    def since(self, mark: int) -> list[dict[str, Any]]:
        return self.exchanges[mark:]


def connect(url: str, wire: Wire, asked: list[str], token: str | None = None) -> Any:
    """A FastMCP client (``auto`` mode) declaring the tasks extension, whose elicitation
    handler records each question and answers from :data:`ANSWERS`."""
    import fastmcp_tasks  # noqa: F401 - registers the tasks extension on every Client
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    async def elicit(message: str, response_type: Any, params: Any, context: Any) -> Any:
        asked.append(message)
        properties = params.requested_schema.get("properties", {})
        return {key: ANSWERS[key] for key in properties if key in ANSWERS}

    headers = {"Authorization": f"Bearer {token}"} if token else None
    transport = StreamableHttpTransport(url, headers=headers, httpx_client_factory=wire.factory)
    return Client(transport, elicitation_handler=elicit, mode="auto", timeout=60)


def dump(model: Any) -> dict[str, Any]:
    """A task result model as the wire spells it (unset optional fields left out)."""
    dumped: dict[str, Any] = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped


def text_of(result: Any) -> dict[str, Any]:
    return {"text": result.content[0].text, "isError": result.is_error}


async def raised(action: Callable[[], Awaitable[Any]]) -> dict[str, Any] | None:
    """The ``ToolError`` (or ``MCPError``) ``action`` raised, or ``None``."""
    from fastmcp.exceptions import ToolError
    from mcp import MCPError

    try:
        await action()
    except ToolError as exc:
        return {"type": "ToolError", "message": str(exc)}
    except MCPError as exc:
        return {"type": "MCPError", "code": exc.code, "message": exc.error.message}
    return None


async def update(client: Any, wire: Wire, task_id: str, responses: dict[str, Any]) -> Any:
    """``tasks/update`` with exactly ``responses`` (the extension's own request model); the
    acknowledgement as it came on the wire."""
    import mcp_types
    from fastmcp_tasks.client_models import UpdateTaskRequest, UpdateTaskRequestParams

    await client.session.send_request(
        UpdateTaskRequest(
            params=UpdateTaskRequestParams(task_id=task_id, input_responses=responses)
        ),
        mcp_types.Result,
    )
    return wire.exchanges[-1]["reply"]


def answer(prop: str) -> dict[str, Any]:
    """An accepted ``ElicitResult`` giving :data:`ANSWERS`' value of ``prop``."""
    return {"action": "accept", "content": {prop: ANSWERS[prop]}}


async def lifecycle(url: str, token: str | None, barrier_dir: str | None) -> dict[str, Any]:
    from fastmcp_tasks import call_tool_task

    wire, asked = Wire(), []
    out: dict[str, Any] = {}
    client = connect(url, wire, asked, token)
    async with client:
        out["protocolVersion"] = client.protocol_version

        # completed: created working, seen working, waited to completion, result parsed.
        quick = await call_tool_task(client, "slow_compute", {"seconds": 3, "label": "quick"})
        out["quick"] = {"created": dump(quick.create_result), "status": dump(await quick.status())}

        # isError: the task completes and carries the result with isError true.
        failing = await call_tool_task(client, "failing_job", {})
        out["failing"] = {
            "created": dump(failing.create_result),
            "final": dump(await failing.wait()),
        }
        out["failing"]["raised"] = await raised(failing.result)
        lenient = await call_tool_task(client, "failing_job", {}, raise_on_error=False)
        out["failing"]["lenient"] = text_of(await lenient.result())

        # JSON-RPC error: the task fails and carries the error.
        broken = await call_tool_task(client, "protocol_error_job", {})
        out["protocolError"] = {"final": dump(await broken.wait())}
        out["protocolError"]["raised"] = await raised(broken.result)

        # input_required, answered by ToolTask.result() through the elicitation handler.
        asked.clear()
        confirm = await call_tool_task(client, "confirm_delete", {"filename": "a.txt"})
        out["confirm"] = {"parked": dump(await confirm.wait(state="input_required"))}
        mark = len(wire.exchanges)
        out["confirm"]["result"] = text_of(await confirm.result())
        out["confirm"]["asked"] = list(asked)
        out["confirm"]["final"] = dump(await confirm.status())
        out["confirm"]["methods"] = [x["method"] for x in wire.since(mark)]
        out["confirm"]["update"] = [x for x in wire.since(mark) if x["method"] == "tasks/update"]

        # Two outstanding input requests, answered one key at a time.
        multi = await call_tool_task(client, "multi_input", {})
        parked = dump(await multi.wait(state="input_required"))
        keys = sorted(parked.get("inputRequests", {}))
        out["multi"] = {"parked": parked}
        out["multi"]["unknownAck"] = await update(
            client, wire, multi.task_id, {"no-such-key": {"ignored": True}}
        )
        out["multi"]["afterUnknown"] = dump(await multi.status())
        by_property = {
            key: next(iter(parked["inputRequests"][key]["params"]["requestedSchema"]["properties"]))
            for key in keys
        }
        first, second = keys
        out["multi"]["firstAck"] = await update(
            client, wire, multi.task_id, {first: answer(by_property[first])}
        )
        out["multi"]["afterFirst"] = dump(await multi.status())
        out["multi"]["secondAck"] = await update(
            client, wire, multi.task_id, {second: answer(by_property[second])}
        )
        out["multi"]["final"] = dump(await multi.wait())
        out["multi"]["result"] = text_of(await multi.result())

        # Cancel while running: acked, cancelled at once, and it stays cancelled.
        slow = await call_tool_task(client, "slow_compute", {"seconds": 60, "label": "long"})
        out["cancelRunning"] = {"before": dump(await slow.status())}
        started = time.monotonic()
        await slow.cancel()
        out["cancelRunning"]["afterCancel"] = dump(await slow.status())
        out["cancelRunning"]["final"] = dump(await slow.wait(timeout=30))
        out["cancelRunning"]["seconds"] = time.monotonic() - started
        out["cancelRunning"]["raised"] = await raised(slow.result)
        out["cancelRunning"]["ack"] = [
            x["reply"]
            for x in wire.exchanges
            if x["method"] == "tasks/cancel" and x["taskId"] == slow.task_id
        ]

        # The first task meanwhile completed; cancelling it is acked and changes nothing.
        out["quick"]["final"] = dump(await quick.wait(timeout=30))
        out["quick"]["result"] = text_of(await quick.result())
        await quick.cancel()
        out["quick"]["afterCancel"] = dump(await quick.status())
        out["quick"]["cancelAck"] = [
            x["reply"]
            for x in wire.exchanges
            if x["method"] == "tasks/cancel" and x["taskId"] == quick.task_id
        ]

        # Transparent call_tool: the claim resolver polls tasks/get and answers through the
        # elicitation handler with tasks/update.
        asked.clear()
        mark = len(wire.exchanges)
        out["transparent"] = text_of(
            await client.call_tool("confirm_delete", {"filename": "b.txt"})
        )
        out["transparent"]["asked"] = list(asked)
        out["transparent"]["methods"] = sorted(
            {x["method"] for x in wire.since(mark) if x["method"] in RECORDED}
        )
        out["transparent"]["failed"] = await raised(
            lambda: client.call_tool("protocol_error_job", {})
        )

        # The SEP-2322 round comes before the task; the retry with the answer creates it.
        asked.clear()
        mark = len(wire.exchanges)
        out["withTask"] = text_of(await client.call_tool("test_tool_with_task", {}))
        out["withTask"]["asked"] = list(asked)
        calls = [x for x in wire.since(mark) if x["method"] == "tools/call"]
        out["withTask"]["rounds"] = [
            {
                "inputResponses": x["inputResponses"],
                "requestState": x["requestState"],
                "resultType": x["reply"]["result"]["resultType"],
                "resultKeys": sorted(x["reply"]["result"]),
            }
            for x in calls
        ]
        out["withTask"]["inputRequests"] = calls[0]["reply"]["result"].get("inputRequests")
        out["withTask"]["polled"] = sorted(
            {x["method"] for x in wire.since(mark) if x["method"] != "tools/call"}
        )
    out["wire"] = [
        {k: x[k] for k in ("method", "headerName", "taskId", "status", "declaresTasks", "reply")}
        for x in wire.exchanges
        if x["method"] in RECORDED
    ]
    return out


async def modern_side(url: str, token: str | None, barrier_dir: str | None) -> dict[str, Any]:
    from fastmcp_tasks import call_tool_task

    wire, asked = Wire(), []
    out: dict[str, Any] = {}
    client = connect(url, wire, asked, token)
    async with client:
        out["protocolVersion"] = client.protocol_version
        out["started"] = await barrier(barrier_dir, "modern")
        quick = await call_tool_task(client, "slow_compute", {"seconds": 1, "label": "modern"})
        out["quickId"] = quick.task_id
        out["quick"] = {"final": (await quick.wait(timeout=30)).status}
        out["quick"].update(text_of(await quick.result()))
        out["confirm"] = text_of(
            await client.call_tool("confirm_delete", {"filename": "modern.txt"})
        )
        out["confirm"]["asked"] = list(asked)
        failing = await call_tool_task(client, "failing_job", {}, raise_on_error=False)
        out["failing"] = {"final": (await failing.wait(timeout=30)).status}
        out["failing"].update(text_of(await failing.result()))
        out["ended"] = time.time()
    return out


async def demo_tools(url: str, token: str | None, barrier_dir: str | None) -> dict[str, Any]:
    """The demo tools of ``taskstore serve`` (examples/wsgi_app.py): ``long_job`` as a task,
    awaited and its result fetched; ``word_count`` through ``call_tool``; ``confirm_action``
    answered through the elicitation handler."""
    from fastmcp_tasks import call_tool_task

    wire, asked = Wire(), []
    out: dict[str, Any] = {}
    client = connect(url, wire, asked, token)
    async with client:
        out["protocolVersion"] = client.protocol_version
        job = await call_tool_task(client, "long_job", {"steps": 3, "interval": 0.05})
        out["job"] = {"created": dump(job.create_result), "final": dump(await job.wait(timeout=30))}
        result = await job.result()
        out["job"]["result"] = {"structured": result.structured_content, **text_of(result)}
        counted = await client.call_tool("word_count", {"text": "one two three"})
        out["wordCount"] = {"structured": counted.structured_content, "isError": counted.is_error}
        out["confirm"] = text_of(await client.call_tool("confirm_action", {"action": "ship"}))
        out["confirm"]["asked"] = list(asked)
    out["wire"] = [
        {k: x[k] for k in ("method", "taskId", "status")}
        for x in wire.exchanges
        if x["method"] in RECORDED
    ]
    return out


# -- the official mcp<2 client (MCP 2025-11-25) ----------------------------------------------


def legacy_connect(url: str, token: str | None, **session_options: Any) -> Any:
    from contextlib import asynccontextmanager

    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    @asynccontextmanager
    async def session() -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=120))
        async with client, streamable_http_client(url, http_client=client) as (read, write, _):  # noqa: SIM117
            async with ClientSession(read, write, **session_options) as made:
                yield made

    return session()


async def legacy_poll(session: Any, task_id: str, stop: str | None = None) -> list[str]:
    seen: list[str] = []
    async for status in session.experimental.poll_task(task_id):
        if not seen or seen[-1] != status.status:
            seen.append(status.status)
        if status.status == stop:
            break
    return seen


async def legacy_side(url: str, token: str | None, barrier_dir: str | None) -> dict[str, Any]:
    import mcp.types as types
    from mcp.shared.exceptions import McpError

    asked: list[str] = []

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"confirm": True})

    out: dict[str, Any] = {}
    async with legacy_connect(url, token, elicitation_callback=on_elicit) as session:
        init = await session.initialize()
        out["protocolVersion"] = init.protocolVersion
        out["started"] = await barrier(barrier_dir, "legacy")
        ex = session.experimental

        quick = await ex.call_tool_as_task("slow_compute", {"seconds": 0.5, "label": "legacy"})
        statuses = await legacy_poll(session, quick.task.taskId)
        result = await ex.get_task_result(quick.task.taskId, types.CallToolResult)
        out["quick"] = {
            "taskId": quick.task.taskId,
            "statuses": statuses,
            "text": result.content[0].text,
        }

        failing = await ex.call_tool_as_task("failing_job", {})
        statuses = await legacy_poll(session, failing.task.taskId)
        result = await ex.get_task_result(failing.task.taskId, types.CallToolResult)
        out["failing"] = {
            "taskId": failing.task.taskId,
            "statuses": statuses,
            "isError": result.isError,
            "text": result.content[0].text,
        }

        broken = await ex.call_tool_as_task("protocol_error_job", {})
        statuses = await legacy_poll(session, broken.task.taskId)
        try:
            await ex.get_task_result(broken.task.taskId, types.CallToolResult)
            error = None
        except McpError as exc:
            error = {"code": exc.error.code, "message": exc.error.message}
        out["protocolError"] = {
            "taskId": broken.task.taskId,
            "statuses": statuses,
            "error": error,
        }

        confirm = await ex.call_tool_as_task("confirm_delete", {"filename": "legacy.txt"})
        seen = await legacy_poll(session, confirm.task.taskId, stop="input_required")
        result = await ex.get_task_result(confirm.task.taskId, types.CallToolResult)
        out["confirm"] = {
            "taskId": confirm.task.taskId,
            "sawInputRequired": seen[-1] == "input_required",
            "asked": list(asked),
            "text": result.content[0].text,
            "final": (await ex.get_task(confirm.task.taskId)).status,
        }

        out["long"] = await _start_long(session)
        out["ended"] = time.time()
    return out


async def _start_long(session: Any) -> dict[str, Any]:
    long = await session.experimental.call_tool_as_task(
        "slow_compute", {"seconds": 60, "label": "legacy-long"}
    )
    got = await session.experimental.get_task(long.task.taskId)
    return {"taskId": long.task.taskId, "status": got.status}


async def legacy_start(url: str, token: str | None, barrier_dir: str | None) -> dict[str, Any]:
    async with legacy_connect(url, token) as session:
        init = await session.initialize()
        long = await _start_long(session)
        return {"protocolVersion": init.protocolVersion, **long}


SCENARIOS: dict[str, Callable[[str, str | None, str | None], Awaitable[dict[str, Any]]]] = {
    "lifecycle": lifecycle,
    "modern_side": modern_side,
    "demo_tools": demo_tools,
    "legacy_side": legacy_side,
    "legacy_start": legacy_start,
}


async def main() -> None:
    scenario, url = sys.argv[1], sys.argv[2]
    token = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    barrier_dir = sys.argv[4] if len(sys.argv) > 4 else None
    if scenario not in SCENARIOS:
        raise SystemExit(f"unknown scenario {scenario}")
    out = await SCENARIOS[scenario](url, token, barrier_dir)
    print(json.dumps(out, sort_keys=True), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
