"""Scenarios driven by FastMCP's client (``fastmcp==4.1.4`` on ``mcp==2.3.0``), the MCP
2026-07-28 client, run inside its own venv (.ci/setup-modern-client.sh).

Usage: ``python modern_client_scenarios.py SCENARIO URL``. Prints one JSON object of
observations on stdout; the pytest side (tests/e2e/test_modern_client.py) asserts on it.
This file runs under the client venv's interpreter and imports nothing from taskstore, nor
``fastmcp_tasks`` (importing it would make every ``Client`` declare the tasks extension).

What the client does is recorded twice: through its own API (``Client.protocol_version``,
results, ``MCPError``), and on the wire, through httpx2 event hooks on the HTTP client the
transport uses (every request's routing headers and ``_meta``, every response's status).

Scenarios:

- ``core`` (examples/conformance_server.py): the era the client negotiated, ``server/discover``
  again and ``ping`` (removed at 2026-07-28), tools/list, ``greet``, an unknown tool,
  ``test_missing_capability`` without sampling, and the SEP-2322 input rounds of
  ``confirm_delete`` (one question) and ``multi_input`` (two), which the client drives itself
  and answers through its elicitation handler.
- ``serve`` (``python -m taskstore serve``): tools/list, ``word_count`` (inline) and the
  task-required ``long_job`` from a client that does not declare the tasks extension.
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from mcp import MCPError

warnings.simplefilter("ignore")

MODERN = "2026-07-28"
META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"

#: What the elicitation handler answers, by the property the requested schema asks for.
ANSWERS: dict[str, Any] = {"name": "Ada", "confirm": True}


class Wire:
    """Every HTTP exchange of one client: request headers and body, response status."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        decoded: Any = json.loads(request.content) if request.content else None
        body: dict[str, Any] = decoded if isinstance(decoded, dict) else {}
        params = body.get("params") or {}
        meta = params.get("_meta") or {}
        self.exchanges.append(
            {
                "http": request.method,
                "id": body.get("id"),
                "method": body.get("method"),
                "name": params.get("name"),
                "headerVersion": request.headers.get("mcp-protocol-version"),
                "headerMethod": request.headers.get("mcp-method"),
                "headerName": request.headers.get("mcp-name"),
                "metaVersion": meta.get(META_VERSION),
                "capabilities": meta.get(META_CAPABILITIES),
                "inputResponses": sorted(params.get("inputResponses") or {}),
                "requestState": "requestState" in params,
                "sessionSent": "mcp-session-id" in request.headers,
                "status": response.status_code,
                "sessionReceived": "mcp-session-id" in response.headers,
            }
        )

    def factory(self, **options: Any) -> httpx2.AsyncClient:
        """The transport's ``httpx_client_factory``: a plain client with the hook."""
        options.setdefault("timeout", httpx2.Timeout(30.0, read=120.0))
        return httpx2.AsyncClient(**options, event_hooks={"response": [self.on_response]})

    def summary(self) -> dict[str, Any]:
        """The era as the wire shows it: versions, methods, headers, sessions."""
        posts = [x for x in self.exchanges if x["http"] == "POST"]
        return {
            "httpMethods": sorted({x["http"] for x in self.exchanges}),
            "methods": [x["method"] for x in posts],
            "headerVersions": sorted({str(x["headerVersion"]) for x in posts}),
            "metaVersions": sorted({str(x["metaVersion"]) for x in posts}),
            "headerMismatches": [
                x["id"]
                for x in posts
                if x["headerVersion"] != x["metaVersion"]
                or x["headerMethod"] != x["method"]
                or x["headerName"] != x["name"]
            ],
            "sessions": any(x["sessionSent"] or x["sessionReceived"] for x in self.exchanges),
        }

    def calls(self, method: str, name: str | None = None) -> list[dict[str, Any]]:
        return [x for x in self.exchanges if x["method"] == method and x["name"] == name]

    def rounds(self, tool: str) -> list[dict[str, Any]]:
        """The ``tools/call`` POSTs of ``tool``: the answers and state each one carried."""
        return [
            {"inputResponses": len(x["inputResponses"]), "requestState": x["requestState"]}
            for x in self.calls("tools/call", tool)
        ]


def error_of(exc: MCPError, wire: Wire, method: str, name: str | None = None) -> dict[str, Any]:
    """The JSON-RPC error the client raised, with the HTTP status of the request behind it."""
    return {
        "code": exc.code,
        "message": exc.error.message,
        "data": exc.error.data,
        "status": wire.calls(method, name)[-1]["status"],
    }


def connect(url: str, wire: Wire, asked: list[str]) -> Client[StreamableHttpTransport]:
    """A client in the default ``auto`` mode (probe ``server/discover``, else ``initialize``)
    whose elicitation handler records each question and answers from :data:`ANSWERS`."""

    async def elicit(message: str, response_type: Any, params: Any, context: Any) -> Any:
        asked.append(message)
        properties = params.requested_schema.get("properties", {})
        return {key: ANSWERS[key] for key in properties if key in ANSWERS}

    transport = StreamableHttpTransport(url, httpx_client_factory=wire.factory)
    return Client(transport, elicitation_handler=elicit, mode="auto", timeout=60)


def tools_of(tools: list[Any]) -> dict[str, Any]:
    return {
        "tools": [tool.name for tool in tools],
        "undescribed": [tool.name for tool in tools if not tool.description],
    }


async def call(
    asked: list[str], wire: Wire, client: Client[Any], tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """Call ``tool`` (the client drives any input rounds itself) and report what happened."""
    asked.clear()
    result = await client.call_tool(tool, arguments)
    return {
        "text": result.content[0].text,
        "isError": result.is_error,
        "asked": list(asked),
        "rounds": wire.rounds(tool),
    }


async def failure(
    wire: Wire, method: str, name: str | None, request: Callable[[], Awaitable[Any]]
) -> dict[str, Any] | None:
    try:
        await request()
    except MCPError as exc:
        return error_of(exc, wire, method, name)
    return None


async def core(url: str) -> dict[str, Any]:
    wire, asked = Wire(), []
    out: dict[str, Any] = {}
    client = connect(url, wire, asked)
    async with client:
        out["protocolVersion"] = client.protocol_version
        out["serverName"] = client.server_info.name if client.server_info else None
        discovered = client.session.discover_result
        out["discover"] = (
            None
            if discovered is None
            else {
                "supportedVersions": discovered.supported_versions,
                "cacheScope": discovered.cache_scope,
                "capabilities": discovered.capabilities.model_dump(
                    mode="json", by_alias=True, exclude_none=True
                ),
            }
        )
        # The 2026-07-28 liveness check is a fresh server/discover; ping is gone from the era.
        again = await client.session.send_discover(MODERN)
        out["rediscover"] = {
            "resultType": again.get("resultType"),
            "supportedVersions": again.get("supportedVersions"),
        }
        out["ping"] = await failure(wire, "ping", None, client.ping)

        out.update(tools_of(await client.list_tools()))
        out["greet"] = await call(asked, wire, client, "greet", {"name": "Ada"})
        out["unknownTool"] = await failure(
            wire, "tools/call", "no_such_tool", lambda: client.call_tool("no_such_tool", {})
        )
        out["missingCapability"] = await failure(
            wire,
            "tools/call",
            "test_missing_capability",
            lambda: client.call_tool("test_missing_capability", {}),
        )
        out["declaredCapabilities"] = wire.calls("tools/call", "test_missing_capability")[-1][
            "capabilities"
        ]
        out["confirmDelete"] = await call(
            asked, wire, client, "confirm_delete", {"filename": "a.txt"}
        )
        out["multiInput"] = await call(asked, wire, client, "multi_input", {})
    out["wire"] = wire.summary()
    ids = [x["id"] for x in wire.exchanges if x["method"] is not None]
    out["idsUnique"] = len(ids) == len(set(ids))
    return out


async def serve(url: str) -> dict[str, Any]:
    wire, asked = Wire(), []
    out: dict[str, Any] = {}
    client = connect(url, wire, asked)
    async with client:
        out["protocolVersion"] = client.protocol_version
        out["serverName"] = client.server_info.name if client.server_info else None
        out.update(tools_of(await client.list_tools()))
        counted = await client.call_tool("word_count", {"text": "a b c"})
        out["wordCount"] = {
            "structured": counted.structured_content,
            "isError": counted.is_error,
            "asked": asked,
        }
        # A task-required tool, from a client that does not declare the tasks extension.
        out["longJob"] = await failure(
            wire, "tools/call", "long_job", lambda: client.call_tool("long_job", {"steps": 1})
        )
    out["wire"] = wire.summary()
    return out


SCENARIOS: dict[str, Callable[[str], Awaitable[dict[str, Any]]]] = {"core": core, "serve": serve}


async def main() -> None:
    scenario, url = sys.argv[1], sys.argv[2]
    if scenario not in SCENARIOS:
        raise SystemExit(f"unknown scenario {scenario}")
    out = await SCENARIOS[scenario](url)
    print(json.dumps(out, sort_keys=True), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
