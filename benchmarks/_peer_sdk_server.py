"""A peer server for ``bench_peers.py``: the official ``mcp`` SDK 1.30 (python-sdk), low level.

Runs under the interpreter of its own venv (``mcp==1.30.0``), not taskstore's. One tool,
``word_count {text}`` (task support optional), the same as ``python -m taskstore serve``'s demo
tool. Tasks: ``server.experimental.enable_tasks()`` (the SDK's ``InMemoryTaskStore`` and
``InMemoryTaskMessageQueue``, with its default ``tasks/get``, ``tasks/result``, ``tasks/list``
and ``tasks/cancel`` handlers); a task-augmented ``tools/call`` goes through
``ctx.experimental.run_task(work)``, the SDK's recommended path. Streamable HTTP through
``StreamableHTTPSessionManager`` (stateful sessions, its default; ``json_response=True`` so a
reply is one JSON body, not an SSE stream), served by uvicorn on one loop, as the SDK's own
``FastMCP.run("streamable-http")`` serves it.

Same stdout contract as ``python -m taskstore serve``: the endpoint URL alone on the first line::

    ~/.cache/taskstore/peers/mcp-1.30.0/bin/python benchmarks/_peer_sdk_server.py --port 0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import mcp.types as types
import uvicorn
from mcp.server.experimental.task_context import ServerTaskContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

WORD_COUNT_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}


def count(text: str) -> types.CallToolResult:
    structured = {"words": len(text.split()), "characters": len(text)}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(structured))],
        structuredContent=structured,
    )


def build() -> Server[Any, Any]:
    server: Server[Any, Any] = Server("peer-python-sdk")
    server.experimental.enable_tasks()

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [
            types.Tool(
                name="word_count",
                description="Count the words and characters of text.",
                inputSchema=WORD_COUNT_SCHEMA,
                execution=types.ToolExecution(taskSupport="optional"),
            )
        ]

    @server.call_tool()
    async def call_tool(
        name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult | types.CreateTaskResult:
        if name != "word_count":
            raise ValueError(f"unknown tool {name}")
        text = str(arguments["text"])
        ctx = server.request_context
        if ctx.experimental.is_task:

            async def work(task: ServerTaskContext) -> types.CallToolResult:
                return count(text)

            return await ctx.experimental.run_task(work)
        return count(text)

    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    manager = StreamableHTTPSessionManager(app=build(), json_response=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    class Endpoint:  # a bare ASGI app as a Route endpoint (Starlette then passes scope as is)
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await manager.handle_request(scope, receive, send)

    app = Starlette(routes=[Route("/mcp", endpoint=Endpoint())], lifespan=lifespan)
    # proto IPPROTO_TCP, as loop.create_server(host, port) makes it: asyncio then sets
    # TCP_NODELAY on accepted connections (with proto 0 it does not, and each reply written in
    # two parts waits ~40 ms for the client's delayed ACK on a kept-alive connection).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]
    print(f"http://{args.host}:{port}/mcp", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
