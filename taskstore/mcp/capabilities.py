"""Protocol versions and the server's ``initialize`` capabilities (MCP 2025-11-25 era)."""

from __future__ import annotations

from taskstore.mcp.jsonrpc import JsonDict
from taskstore.types import server_tasks_capability

__all__ = [
    "LATEST_PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "negotiate_version",
    "server_capabilities",
]

#: The version taskstore speaks natively.
LATEST_PROTOCOL_VERSION = "2025-11-25"
#: Versions accepted in ``initialize`` and the ``MCP-Protocol-Version`` header: the latest plus
#: the older ones official clients still send (their SUPPORTED_PROTOCOL_VERSIONS).
SUPPORTED_PROTOCOL_VERSIONS: tuple[str, ...] = (
    LATEST_PROTOCOL_VERSION,
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
)


def negotiate_version(requested: object) -> str:
    """The version to answer ``initialize`` with: the client's if supported, else the latest
    (the client then decides whether it can continue, as the lifecycle spec says)."""
    if isinstance(requested, str) and requested in SUPPORTED_PROTOCOL_VERSIONS:
        return requested
    return LATEST_PROTOCOL_VERSION


def server_capabilities(*, identified: bool, prompts: bool = True) -> JsonDict:
    """The ``capabilities`` of ``InitializeResult``.

    :param identified: the server can tell requestors apart (sessions or authentication);
        when not, ``tasks.list`` is omitted (DESIGN §3): listing would show every anonymous
        caller's tasks to every other.
    :param prompts: advertise ``prompts``.
    """
    capabilities: JsonDict = {"tools": {"listChanged": False}}
    if prompts:
        capabilities["prompts"] = {"listChanged": False}
    capabilities["tasks"] = server_tasks_capability(list_supported=identified)
    return capabilities
