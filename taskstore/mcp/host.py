"""``Host``: the narrow view of a server that prompts and the workflow bridge get.

A prompt handler (and the workflow engine behind a workflow prompt) needs the store, the
registered tools, a way to run a tool for its caller, and to observe answered tool calls; not
the whole server. :class:`~taskstore.mcp.server.McpServer` satisfies this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from taskstore.aliases import JsonDict
from taskstore.mcp.auth import Caller
from taskstore.mcp.tools import ToolSpec
from taskstore.store import TaskStore

__all__ = ["Host", "ToolCallHook"]

#: Observes every answered ``tools/call``: ``hook(params, result, caller, task_id)``, where
#: ``task_id`` is the id of the task the call created (``None`` for an inline call) and
#: ``result`` the answer sent (the ``CallToolResult`` of an inline call).
ToolCallHook = Callable[[Mapping[str, Any], JsonDict, Caller, "str | None"], None]


class Host(Protocol):
    """What a server offers its prompts and the workflow bridge. Thread-safe."""

    @property
    def store(self) -> TaskStore:
        """Where the server's tasks live."""
        ...

    def get_tool(self, name: str) -> ToolSpec | None:
        """The registered tool called ``name``, or ``None``."""
        ...

    def run_tool(self, name: str, arguments: Mapping[str, Any], caller: Caller) -> JsonDict:
        """Run tool ``name`` inline for ``caller``, whatever its ``taskSupport``, and return
        its ``CallToolResult`` (a tool error is an ``isError: true`` result).

        :raises ProtocolError: ``-32602`` unknown tool or bad arguments; ``-32603`` when the
            tool raised.
        """
        ...

    def add_tool_call_hook(self, hook: ToolCallHook) -> None:
        """Call ``hook`` after every successful ``tools/call``; a hook that raises is logged
        and the call's answer is unaffected."""
        ...
