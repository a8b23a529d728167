"""taskstore without OpenTelemetry: nothing imported, nothing recorded, every operation as
before (runs in every env, whether or not the ``otel`` extra is installed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Made unimportable by a meta path finder, as if the otel extra were not installed: the
# subprocess then runs a full lifecycle through the store, the MCP server and the WSGI app.
_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, io, sys, threading
    from wsgiref.util import setup_testing_defaults

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocked())
    for name in [m for m in sys.modules if m.startswith("opentelemetry")]:
        del sys.modules[name]

    import msgspec
    import taskstore
    from taskstore import TaskStatus, telemetry
    from taskstore.mcp import McpServer
    from taskstore.wsgi import McpWsgiApp

    store = taskstore.open("memory://", poll_interval_ms=10, max_tasks_per_owner=4)
    rec = store.create("alice", request={"name": "t", "arguments": {}})
    assert store.get(rec.task_id, "alice").status is TaskStatus.WORKING
    store.set_variables(rec.task_id, "alice", {"a": 1})
    store.update_status(rec.task_id, "alice", "input_required", "need input")
    store.update_status(rec.task_id, "alice", "working")
    threading.Timer(0.05, store.complete, (rec.task_id, "alice", {"ok": True})).start()
    assert store.wait(rec.task_id, "alice", timeout=5).status is TaskStatus.COMPLETED
    assert store.get_result(rec.task_id, "alice").result == {"ok": True}
    other = store.create("alice")
    store.cancel(other.task_id, "alice")
    third = store.create("alice")
    store.fail(third.task_id, "alice", message="no")
    store.create("alice")
    try:
        store.create("alice")
    except taskstore.QuotaExceededError:
        pass
    else:
        raise AssertionError("quota not enforced")
    assert len(store.list("alice").tasks) == 4
    assert store.fail_stale(older_than_ms=0, message="stale") in (0, 1)
    store.cleanup_expired()

    server = McpServer(taskstore.open("memory://", allow_anonymous=True, poll_interval_ms=10))

    @server.tool("echo", task_support="optional")
    def echo(arguments, ctx):
        return str(arguments.get("text", ""))

    app = McpWsgiApp(server, loopback_only=True)

    def call(body, session=None):
        raw = msgspec.json.encode(body)
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/mcp", "CONTENT_LENGTH": str(len(raw)),
            "CONTENT_TYPE": "application/json", "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_ACCEPT": "application/json", "wsgi.input": io.BytesIO(raw),
        }
        if session:
            environ["HTTP_MCP_SESSION_ID"] = session
        setup_testing_defaults(environ)
        seen = {}
        body = b"".join(app(environ, lambda s, h, e=None: seen.update(s=s, h=dict(h))))
        return seen, msgspec.json.decode(body) if body else None

    init = {"protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}
    seen, _ = call({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    session = seen["h"]["Mcp-Session-Id"]
    _, created = call({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"text": "hi"}, "task": {}}},
                      session)
    task_id = created["result"]["task"]["taskId"]
    _, result = call({"jsonrpc": "2.0", "id": 2, "method": "tasks/result",
                      "params": {"taskId": task_id}}, session)
    assert result["result"]["content"] == [{"type": "text", "text": "hi"}], result
    app.close()
    server.close()

    assert telemetry.active is False
    assert telemetry.current_context() is None
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    assert not loaded, loaded
    print("ok")
    """
)


def test_everything_works_without_opentelemetry() -> None:
    """With opentelemetry unimportable, `import taskstore`, a store lifecycle, a
    task-augmented tool call over HTTP all work unchanged and telemetry stays off."""
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_import_taskstore_does_not_import_opentelemetry() -> None:
    """`import taskstore` never imports opentelemetry (installed or not): telemetry looks for
    it only at the first store operation."""
    code = (
        "import sys, taskstore\n"
        "from taskstore import telemetry\n"
        "assert telemetry.active\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
