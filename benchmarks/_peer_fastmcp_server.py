"""A peer server for ``bench_peers.py``: FastMCP 3.4 (``fastmcp[tasks]``, with ``mcp<2``).

Runs under the interpreter of its own venv, not taskstore's. One tool, ``word_count {text}``,
the same as ``python -m taskstore serve``'s demo tool, declared ``@mcp.tool(task=True)`` (task
mode ``optional``: inline or as a task; FastMCP requires an ``async`` function for it). Tasks
are docket-backed: FastMCP's lifespan opens a ``Docket`` at its default URL ``memory://`` (an
in-process Redis emulation) and runs a docket ``Worker`` in the server's loop; ``tasks/get``,
``tasks/result`` read the task state from docket. Streamable HTTP with stateful sessions (the
default) and ``json_response=True`` (one JSON body per reply, not an SSE stream), served by
uvicorn as ``FastMCP.run_http_async`` serves it.

Same stdout contract as ``python -m taskstore serve``: the endpoint URL alone on the first line::

    ~/.cache/taskstore/peers/fastmcp-3.4/bin/python benchmarks/_peer_fastmcp_server.py --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import Any

from fastmcp import FastMCP

mcp: FastMCP[Any] = FastMCP("peer-fastmcp")


@mcp.tool(task=True)
async def word_count(text: str) -> dict[str, int]:
    """Count the words and characters of text."""
    return {"words": len(text.split()), "characters": len(text)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    # proto IPPROTO_TCP, as loop.create_server(host, port) makes it: asyncio then sets
    # TCP_NODELAY on accepted connections (with proto 0 it does not, and each reply written in
    # two parts waits ~40 ms for the client's delayed ACK on a kept-alive connection).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]
    print(f"http://{args.host}:{port}/mcp", flush=True)
    asyncio.run(
        mcp.run_http_async(
            show_banner=False,
            transport="http",
            host=args.host,
            port=port,
            path="/mcp",
            log_level="warning",
            json_response=True,
            uvicorn_config={"access_log": False},
            sockets=[sock],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
