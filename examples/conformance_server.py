"""The official MCP conformance suite's fixture server, both protocol eras (DESIGN §9c).

Run it like ``python -m taskstore serve``::

    python examples/conformance_server.py [--store URL] [--host 127.0.0.1] [--port 8000]

It prints one line, the endpoint URL ``http://HOST:PORT/mcp``, and serves MCP 2025-11-25
sessions and stateless MCP 2026-07-28 requests at that one URL, with the fixture tools the
suite's scenarios call (``greet`` first):

- ``greet {name?}``: never a task; ``Hello, <name>!``.
- ``slow_compute {seconds, label?}``: may run as a task; sleeps (cancellable), then answers.
- ``failing_job {}``: must run as a task; ends with an ``isError: true`` result.
- ``protocol_error_job {}``: may run as a task; fails with a JSON-RPC error (-32603).
- ``confirm_delete {filename}``: asks ``{confirm: boolean}`` (elicitation), then answers.
- ``multi_input {}``: asks for a name and a confirmation.
- ``test_tool_with_task {}``: must run as a task; asks for a name first, then greets it.
- ``test_missing_capability {}``: needs the request's ``sampling`` capability.
- ``test_streaming_elicitation {}``, ``test_logging_tool {}``: plain text results.

The conformance command lines are in the README ("Serving MCP 2026-07-28 and 2025-11-25
clients").
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from taskstore.errors import INTERNAL_ERROR, ProtocolError, ToolError
from taskstore.mcp import McpServer, PromptArgument, PromptContext, ToolContext
from taskstore.mcp.context import elicitation_request
from taskstore.store import TaskStore
from taskstore.wsgi import run_cli

_NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}


def greet(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """Greet someone by name (default: World)."""
    return f"Hello, {arguments.get('name', 'World')}!"


def slow_compute(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """Compute slowly: sleep ``seconds`` (stopping early when cancelled), then answer."""
    seconds = float(arguments["seconds"])
    label = str(arguments.get("label", "job"))
    if ctx.sleep(max(0.0, seconds)):
        return f"{label}: cancelled"
    return f"{label}: computed after {seconds:g} s"


def failing_job(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """A job whose tool reports an error (an ``isError: true`` result)."""
    ctx.sleep(0.2)
    raise ToolError("The job failed: the input could not be processed")


def protocol_error_job(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """A job that fails with a JSON-RPC error instead of a result."""
    ctx.sleep(0.2)
    raise ProtocolError(INTERNAL_ERROR, "The job hit an internal protocol error")


def confirm_delete(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """Ask the user to confirm deleting ``filename``, then report the decision."""
    filename = str(arguments["filename"])
    answer = ctx.elicit(
        f"Delete {filename}?",
        {
            "type": "object",
            "properties": {"confirm": {"type": "boolean", "description": "Delete the file?"}},
            "required": ["confirm"],
        },
    )
    content = answer.get("content") or {}
    if answer.get("action") == "accept" and content.get("confirm") is True:
        return f"Deleted {filename}"
    return f"Kept {filename}"


_NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
_CONFIRM_SCHEMA = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean"}},
    "required": ["confirm"],
}
_WHO = "Who should be greeted?"


def multi_input(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """Ask for a name and for a confirmation at once, then report both."""
    answers = ctx.request_input(
        {
            "name": elicitation_request("What is your name?", _NAME_SCHEMA),
            "confirm": elicitation_request("Confirm?", _CONFIRM_SCHEMA),
        },
        message="Waiting for a name and a confirmation",
    )
    who = (answers["name"].get("content") or {}).get("name", "someone")
    sure = (answers["confirm"].get("content") or {}).get("confirm") is True
    return f"{who} {'confirmed' if sure else 'did not confirm'}"


def test_tool_with_task(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """Ask for a name first (before the task starts, where the client can answer so), then
    greet it."""
    answer = ctx.elicit(_WHO, _NAME_SCHEMA)
    return f"Hello, {(answer.get('content') or {}).get('name', 'stranger')}!"


def test_missing_capability(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """A tool that needs the client's sampling capability."""
    return "The client can sample."


def test_streaming_elicitation(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """Answer at once, sending no request to the client on the response stream."""
    return "No elicitation was needed."


def test_logging_tool(arguments: dict[str, Any], ctx: ToolContext) -> str:
    """Answer at once, logging nothing (the request set no log level)."""
    return "Nothing was logged."


def build_server(store: TaskStore) -> McpServer:
    """The fixture server over ``store``."""
    server = McpServer(store, name="taskstore-conformance")
    server.add_tool(
        greet,
        input_schema={"type": "object", "properties": {"name": {"type": "string"}}},
    )
    server.add_tool(
        slow_compute,
        task_support="optional",
        input_schema={
            "type": "object",
            "properties": {"seconds": {"type": "number"}, "label": {"type": "string"}},
            "required": ["seconds"],
        },
    )
    server.add_tool(failing_job, task_support="required", input_schema=_NO_ARGUMENTS)
    server.add_tool(protocol_error_job, task_support="optional", input_schema=_NO_ARGUMENTS)
    server.add_tool(
        confirm_delete,
        task_support="optional",
        input_schema={
            "type": "object",
            "properties": {"filename": {"type": "string"}},
            "required": ["filename"],
        },
    )
    server.add_tool(multi_input, task_support="optional", input_schema=_NO_ARGUMENTS)
    server.add_tool(
        test_tool_with_task,
        task_support="required",
        input_schema=_NO_ARGUMENTS,
        pre_task_input={"elicitation-1": elicitation_request(_WHO, _NAME_SCHEMA)},
    )
    server.add_tool(
        test_missing_capability,
        input_schema=_NO_ARGUMENTS,
        required_capabilities={"sampling": {}},
    )
    server.add_tool(test_streaming_elicitation, input_schema=_NO_ARGUMENTS)
    server.add_tool(test_logging_tool, input_schema=_NO_ARGUMENTS)

    @server.prompt(
        "greeting",
        description="A prompt asking the model to greet someone.",
        arguments=[PromptArgument("name", "Who to greet", required=True)],
    )
    def greeting(arguments: dict[str, str], ctx: PromptContext) -> str:
        return f"Please greet {arguments['name']} warmly."

    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the fixtures until Ctrl-C or SIGTERM."""
    return run_cli(
        build_server,
        argv,
        prog="conformance_server.py",
        description=__doc__,
        store_options={"allow_anonymous": True},
    )


if __name__ == "__main__":
    sys.exit(main())
