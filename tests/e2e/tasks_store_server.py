"""The conformance fixture tools (examples/conformance_server.py) over a given store URL, with
optional bearer tokens, reporting when its tools return: for the tasks-extension end-to-end
tests (tests/e2e/test_modern_tasks.py, tests/e2e/test_modern_cross_process.py).

Usage: ``python tasks_store_server.py STORE_URL [--auth]``. Prints the endpoint URL once
listening, then one JSON line per return of ``slow_compute`` or ``confirm_delete`` in *this*
process (``{"event": "returned", "tool", "taskId", "text"}``), and serves until SIGTERM.
With ``--auth`` the tokens ``tok-a`` → alice and ``tok-b`` → bob authenticate; a request without
a token stays anonymous (2025-11-25: its session owns its tasks; 2026-07-28: the shared
anonymous owner). The store allows anonymous tasks either way, as ``serve`` does.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import taskstore
from taskstore.mcp import ToolContext
from taskstore.wsgi import McpWsgiApp, bearer_authenticator, make_wsgi_server

CONFORMANCE = Path(__file__).resolve().parents[2] / "examples" / "conformance_server.py"
TOKENS = {"tok-a": "alice", "tok-b": "bob"}
_print_lock = threading.Lock()


def _emit(event: dict[str, Any]) -> None:
    with _print_lock:
        print(json.dumps(event, sort_keys=True), flush=True)


def _reporting(tool: Callable[[dict[str, Any], ToolContext], str]) -> Callable[..., str]:
    """``tool`` (same name and docstring), printing an event line when it returns."""

    @functools.wraps(tool)
    def run(arguments: dict[str, Any], ctx: ToolContext) -> str:
        text = tool(arguments, ctx)
        _emit({"event": "returned", "tool": tool.__name__, "taskId": ctx.task_id, "text": text})
        return text

    return run


def _load_conformance() -> Any:
    spec = importlib.util.spec_from_file_location("conformance_fixtures", CONFORMANCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # build_server looks the handlers up by module global when it registers them.
    module.slow_compute = _reporting(module.slow_compute)
    module.confirm_delete = _reporting(module.confirm_delete)
    return module


def main(argv: list[str]) -> int:
    store_url, auth = argv[0], "--auth" in argv[1:]
    store = taskstore.open(store_url, allow_anonymous=True)
    server = _load_conformance().build_server(store)
    app = McpWsgiApp(
        server,
        loopback_only=True,
        authenticate=bearer_authenticator(TOKENS, required=False) if auth else None,
        keepalive_s=1.0,
    )
    httpd = make_wsgi_server(app, "127.0.0.1", 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with _print_lock:
        print(f"http://127.0.0.1:{httpd.server_port}/mcp", flush=True)
    while not stop.wait(0.2):
        pass
    httpd.shutdown()
    app.close()
    server.close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
