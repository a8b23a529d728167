"""Scenarios driven by the OFFICIAL MCP Python client (``mcp<2``), run inside its own venv.

Usage: ``python mcp_client_scenarios.py SCENARIO URL [TOKEN]``. Prints one JSON object of
observations on stdout; the pytest side (tests/e2e/test_official_client.py) asserts on it.
This file runs under the client venv's interpreter and imports nothing from taskstore.
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import mcp.types as types
from mcp import ClientSession
from mcp.shared.exceptions import McpError

warnings.simplefilter("ignore")  # the experimental tasks API warns that it is experimental

try:
    from mcp.client.streamable_http import streamable_http_client as _transport

    _NEW_TRANSPORT = True
except ImportError:  # mcp < 1.25
    from mcp.client.streamable_http import streamablehttp_client as _transport

    _NEW_TRANSPORT = False


@asynccontextmanager
async def connect(
    url: str, token: str | None = None, **session_options: Any
) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if _NEW_TRANSPORT:
        client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300))
        async with client, _transport(url, http_client=client) as (read, write, _):  # noqa: SIM117
            async with ClientSession(read, write, **session_options) as session:
                yield session
    else:
        async with _transport(url, headers=headers) as (read, write, _):  # noqa: SIM117
            async with ClientSession(read, write, **session_options) as session:
                yield session


async def poll(session: ClientSession, task_id: str) -> list[str]:
    seen = []
    async for status in session.experimental.poll_task(task_id):
        if not seen or seen[-1] != status.status:
            seen.append(status.status)
    return seen


def error_of(exc: McpError) -> dict[str, Any]:
    return {"code": exc.error.code, "message": exc.error.message, "data": exc.error.data}


async def basic(url: str, token: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    notifications: list[dict[str, Any]] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.TaskStatusNotification
        ):
            notifications.append(message.root.params.model_dump(mode="json", by_alias=True))

    async with connect(url, token, message_handler=on_message) as session:
        init = await session.initialize()
        out["protocolVersion"] = init.protocolVersion
        out["tasksCapability"] = init.capabilities.tasks.model_dump(mode="json", exclude_none=True)
        tools = await session.list_tools()
        out["taskSupport"] = {
            tool.name: (tool.execution.taskSupport if tool.execution else None)
            for tool in tools.tools
        }

        created = await session.experimental.call_tool_as_task("echo", {"text": "hi"}, ttl=60000)
        task_id = created.task.taskId
        out["created"] = {"status": created.task.status, "ttl": created.task.ttl}
        out["echoStatuses"] = await poll(session, task_id)
        result = await session.experimental.get_task_result(task_id, types.CallToolResult)
        out["echoResult"] = {
            "text": result.content[0].text,
            "isError": result.isError,
            "relatedTask": (result.meta or {}).get("io.modelcontextprotocol/related-task"),
        }
        out["echoTaskId"] = task_id

        listed = await session.experimental.list_tasks()
        out["listedIds"] = [task.taskId for task in listed.tasks]

        slow = await session.experimental.call_tool_as_task("wait_for_cancel", {})
        cancelled = await session.experimental.cancel_task(slow.task.taskId)
        out["cancelStatus"] = cancelled.status
        out["afterCancel"] = (await session.experimental.get_task(slow.task.taskId)).status
        try:
            await session.experimental.get_task_result(slow.task.taskId, types.CallToolResult)
            out["cancelledResult"] = None
        except McpError as exc:
            out["cancelledResult"] = error_of(exc)
        try:
            await session.experimental.cancel_task(slow.task.taskId)
            out["cancelAgain"] = None
        except McpError as exc:
            out["cancelAgain"] = error_of(exc)

        failing = await session.experimental.call_tool_as_task("tool_error", {})
        out["errorStatuses"] = await poll(session, failing.task.taskId)
        failed = await session.experimental.get_task_result(
            failing.task.taskId, types.CallToolResult
        )
        out["errorResult"] = {"isError": failed.isError, "text": failed.content[0].text}

        crashing = await session.experimental.call_tool_as_task("crash", {})
        out["crashStatuses"] = await poll(session, crashing.task.taskId)
        crash_task = await session.experimental.get_task(crashing.task.taskId)
        out["crashStatusMessage"] = crash_task.statusMessage
        try:
            await session.experimental.get_task_result(crashing.task.taskId, types.CallToolResult)
            out["crashResult"] = None
        except McpError as exc:
            out["crashResult"] = error_of(exc)

        try:
            await session.call_tool("echo_required", {"text": "x"})
            out["requiredInline"] = None
        except McpError as exc:
            out["requiredInline"] = error_of(exc)
        inline = await session.call_tool("echo", {"text": "inline"})
        out["inline"] = inline.content[0].text
        try:
            await session.experimental.get_task("no-such-task")
            out["unknownTask"] = None
        except McpError as exc:
            out["unknownTask"] = error_of(exc)

        # Status notifications arrive on the session's GET stream; wait for the ones of the
        # echo task (bounded: the stream is asynchronous).
        for _ in range(100):
            if any(n["taskId"] == task_id and n["status"] == "completed" for n in notifications):
                break
            await asyncio.sleep(0.05)
        out["notified"] = sorted({n["status"] for n in notifications if n["taskId"] == task_id})
    return out


async def create(url: str, token: str | None) -> dict[str, Any]:
    async with connect(url, token) as session:
        await session.initialize()
        created = await session.experimental.call_tool_as_task("echo", {"text": "mine"})
        statuses = await poll(session, created.task.taskId)
        listed = await session.experimental.list_tasks()
        return {
            "taskId": created.task.taskId,
            "statuses": statuses,
            "listed": [t.taskId for t in listed.tasks],
        }


async def snoop(url: str, token: str | None, task_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with connect(url, token) as session:
        await session.initialize()
        listed = await session.experimental.list_tasks()
        out["listed"] = [t.taskId for t in listed.tasks]
        for name, call in (
            ("get", session.experimental.get_task(task_id)),
            ("result", session.experimental.get_task_result(task_id, types.CallToolResult)),
            ("cancel", session.experimental.cancel_task(task_id)),
        ):
            try:
                await call
                out[name] = None
            except McpError as exc:
                out[name] = error_of(exc)
    return out


async def elicit(url: str, token: str | None) -> dict[str, Any]:
    asked: list[str] = []

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"confirm": True})

    async with connect(url, token, elicitation_callback=on_elicit) as session:
        await session.initialize()
        created = await session.experimental.call_tool_as_task(
            "confirm_action", {"action": "deploy"}
        )
        task_id = created.task.taskId
        seen = []
        async for status in session.experimental.poll_task(task_id):
            seen.append(status.status)
            if status.status == "input_required":
                break
        result = await session.experimental.get_task_result(task_id, types.CallToolResult)
        final = await session.experimental.get_task(task_id)
        return {
            "sawInputRequired": "input_required" in seen,
            "asked": asked,
            "text": result.content[0].text,
            "final": final.status,
        }


async def workflow(url: str, token: str | None) -> dict[str, Any]:
    """The data_pipeline workflow prompt: happy path, failure, handoff, continuation, result."""
    out: dict[str, Any] = {}
    async with connect(url, token) as session:
        await session.initialize()
        prompts = await session.list_prompts()
        out["prompts"] = [
            {"name": p.name, "arguments": [[a.name, a.required] for a in p.arguments or []]}
            for p in prompts.prompts
        ]
        happy = await session.get_prompt("data_pipeline", {"source": "sales"})
        out["happyMeta"] = happy.meta
        summary = await session.experimental.get_task_result(
            happy.meta["task_id"], types.CallToolResult
        )
        out["happySummary"] = summary.structuredContent
        failing = await session.get_prompt("data_pipeline", {"source": "nowhere"})
        out["failingMeta"] = failing.meta
        last = failing.messages[-1]
        out["handoff"] = {"role": last.role, "text": last.content.text}
        task_id = failing.meta["task_id"]
        meta = {"_task_id": task_id}
        fetched = await session.call_tool("fetch_data", {"source": "sales"}, meta=meta)
        rows = fetched.structuredContent["rows"]
        out["afterFetch"] = (await session.experimental.get_task(task_id)).status
        clean = await session.call_tool("transform_data", {"rows": rows}, meta=meta)
        stored = await session.call_tool(
            "store_data", {"rows": clean.structuredContent["rows"]}, meta=meta
        )
        out["stored"] = stored.structuredContent
        result = await session.experimental.get_task_result(task_id, types.CallToolResult)
        out["final"] = (await session.experimental.get_task(task_id)).status
        out["summary"] = result.structuredContent
        out["relatedTask"] = (result.meta or {}).get("io.modelcontextprotocol/related-task")
    return out


async def workflow_start(url: str, token: str | None) -> dict[str, Any]:
    """Start a failing data_pipeline workflow and report its task id."""
    async with connect(url, token) as session:
        await session.initialize()
        failing = await session.get_prompt("data_pipeline", {"source": "nowhere"})
        return {"meta": failing.meta}


async def workflow_resume(url: str, token: str | None, task_id: str) -> dict[str, Any]:
    """Resume a workflow task by re-invoking the prompt with its id and a good source."""
    async with connect(url, token) as session:
        await session.initialize()
        resumed = await session.send_request(
            types.ClientRequest(
                types.GetPromptRequest(
                    params=types.GetPromptRequestParams(
                        name="data_pipeline",
                        arguments={"source": "sales"},
                        _meta={"_task_id": task_id},
                    )
                )
            ),
            types.GetPromptResult,
        )
        result = await session.experimental.get_task_result(task_id, types.CallToolResult)
        return {"meta": resumed.meta, "summary": result.structuredContent}


async def main() -> None:
    scenario, url = sys.argv[1], sys.argv[2]
    token = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    extra = sys.argv[4:]
    if scenario == "basic":
        out = await basic(url, token)
    elif scenario == "create":
        out = await create(url, token)
    elif scenario == "snoop":
        out = await snoop(url, token, extra[0])
    elif scenario == "elicit":
        out = await elicit(url, token)
    elif scenario == "workflow":
        out = await workflow(url, token)
    elif scenario == "workflow_start":
        out = await workflow_start(url, token)
    elif scenario == "workflow_resume":
        out = await workflow_resume(url, token, extra[0])
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(out, sort_keys=True), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
