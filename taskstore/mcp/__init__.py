"""The MCP protocol layer: task routers, tool runner, notifications and a transport-neutral
server for both protocol eras (MCP 2025-11-25 ``tasks`` utility; MCP 2026-07-28 and its tasks
extension).

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

from taskstore.errors import OutcomeError, ProtocolError, TaskCancelled, ToolError
from taskstore.mcp.auth import AuthContext, Caller
from taskstore.mcp.capabilities import (
    LATEST_PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    negotiate_version,
    server_capabilities,
)
from taskstore.mcp.context import ToolContext, elicitation_request
from taskstore.mcp.era import ERA_2025_11_25, ERA_2026_07_28, Era, era_of
from taskstore.mcp.host import Host, ToolCallHook
from taskstore.mcp.inputs import InputBroker
from taskstore.mcp.jsonrpc import error_object
from taskstore.mcp.notifications import NotificationSender, StatusNotifier, status_notification
from taskstore.mcp.projections import (
    LEGACY,
    MODERN,
    LegacyProjection,
    ModernProjection,
    Projection,
)
from taskstore.mcp.prompts import PromptArgument, PromptContext, PromptRegistry, PromptSpec
from taskstore.mcp.request import RequestContext
from taskstore.mcp.router import TaskRouter
from taskstore.mcp.runner import ToolAnswer, ToolRunner
from taskstore.mcp.server import McpServer, Reply, ReplyStream
from taskstore.mcp.tools import ToolRegistry, ToolSpec

__all__ = [
    "ERA_2025_11_25",
    "ERA_2026_07_28",
    "LATEST_PROTOCOL_VERSION",
    "LEGACY",
    "MODERN",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "AuthContext",
    "Caller",
    "Era",
    "Host",
    "InputBroker",
    "LegacyProjection",
    "McpServer",
    "ModernProjection",
    "NotificationSender",
    "OutcomeError",
    "Projection",
    "PromptArgument",
    "PromptContext",
    "PromptRegistry",
    "PromptSpec",
    "ProtocolError",
    "Reply",
    "ReplyStream",
    "RequestContext",
    "StatusNotifier",
    "TaskCancelled",
    "TaskRouter",
    "ToolAnswer",
    "ToolCallHook",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolRunner",
    "ToolSpec",
    "elicitation_request",
    "era_of",
    "error_object",
    "negotiate_version",
    "server_capabilities",
    "status_notification",
]
