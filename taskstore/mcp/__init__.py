"""The MCP protocol layer: task router, tool runner, notifications and a transport-neutral
server (MCP 2025-11-25 ``tasks`` utility).

>>> import taskstore
>>> from taskstore.mcp import McpServer
>>> server = McpServer(taskstore.open("memory://"))
>>> @server.tool("add", task_support="optional")
... def add(arguments, ctx):
...     return {"sum": arguments["a"] + arguments["b"]}
>>> reply = server.handle(
...     {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
...      "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
...     session_id="s1",
... )
>>> reply["result"]["structuredContent"]
{'sum': 3}
>>> server.close()
"""

from __future__ import annotations

from taskstore.mcp.auth import AuthContext, Caller
from taskstore.mcp.capabilities import (
    LATEST_PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    negotiate_version,
    server_capabilities,
)
from taskstore.mcp.context import TaskCancelled, ToolContext
from taskstore.mcp.inputs import InputBroker
from taskstore.mcp.jsonrpc import ProtocolError, error_object
from taskstore.mcp.notifications import NotificationSender, StatusNotifier, status_notification
from taskstore.mcp.projection import LEGACY, LegacyProjection, OutcomeError, Projection
from taskstore.mcp.prompts import PromptArgument, PromptContext, PromptRegistry, PromptSpec
from taskstore.mcp.router import TaskRouter
from taskstore.mcp.runner import ToolRunner
from taskstore.mcp.server import McpServer, RequestContext
from taskstore.mcp.tools import ToolError, ToolRegistry, ToolSpec

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "LEGACY",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "AuthContext",
    "Caller",
    "InputBroker",
    "LegacyProjection",
    "McpServer",
    "NotificationSender",
    "OutcomeError",
    "Projection",
    "PromptArgument",
    "PromptContext",
    "PromptRegistry",
    "PromptSpec",
    "ProtocolError",
    "RequestContext",
    "StatusNotifier",
    "TaskCancelled",
    "TaskRouter",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolRunner",
    "ToolSpec",
    "error_object",
    "negotiate_version",
    "server_capabilities",
    "status_notification",
]
