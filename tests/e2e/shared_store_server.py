"""An MCP endpoint over a given store URL with bearer tokens, for the shared-store test.

Usage: ``python shared_store_server.py STORE_URL``. Prints the endpoint URL once listening,
then serves until SIGTERM. Tokens: ``tok-a`` → alice, ``tok-b`` → bob.
"""

from __future__ import annotations

import signal
import sys
import threading

import taskstore
from taskstore.mcp import McpServer
from taskstore.mcp.demo import register_demo_tools
from taskstore.wsgi import McpWsgiApp, bearer_authenticator, make_wsgi_server


def main() -> int:
    store = taskstore.open(sys.argv[1], poll_interval_ms=50)
    server = McpServer(store)
    register_demo_tools(server)
    app = McpWsgiApp(
        server,
        loopback_only=True,
        authenticate=bearer_authenticator({"tok-a": "alice", "tok-b": "bob"}),
        keepalive_s=1.0,
    )
    httpd = make_wsgi_server(app, "127.0.0.1", 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{httpd.server_port}/mcp", flush=True)
    while not stop.wait(0.2):
        pass
    httpd.shutdown()
    app.close()
    server.close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
