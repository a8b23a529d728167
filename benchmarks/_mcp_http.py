"""MCP requests over plain ``http.client`` for the server benchmarks: a 2025-11-25 session
(:class:`LegacySession`), stateless 2026-07-28 requests (:class:`ModernClient`, with the
per-request ``_meta`` and the routing headers of /work/notes/modern-spec.md §1 and §4), and
starting a server script that prints its endpoint URL as its first stdout line
(:func:`start_server`).

Every request opens a new connection: the bundled server (``wsgiref``) speaks HTTP/1.0, so
there is no keep-alive to use.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO, Any
from urllib.parse import urlsplit

__all__ = [
    "LEGACY_VERSION",
    "MODERN_VERSION",
    "TASKS_CAPABILITY",
    "Endpoint",
    "LegacySession",
    "ModernClient",
    "RunningServer",
    "start_server",
]

LEGACY_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
#: The client capability that declares the tasks extension (SEP-2663).
TASKS_CAPABILITY: dict[str, Any] = {"extensions": {TASKS_EXTENSION: {}}}
CLIENT_INFO = {"name": "bench", "version": "1"}

# tasks/* name their task in Mcp-Name; tools/call and prompts/get their tool or prompt.
_NAME_FIELD = {
    "tools/call": "name",
    "prompts/get": "name",
    "tasks/get": "taskId",
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}


class McpCallError(RuntimeError):
    """A request answered with a non-200 status or a JSON-RPC error."""


class Endpoint:
    """``http://HOST:PORT/PATH``; :meth:`post` sends one request on a fresh connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"

    def post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("POST", self.path, body, dict(headers))
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()


def _reply(method: str, status: int, body: bytes) -> dict[str, Any]:
    try:
        reply: dict[str, Any] = json.loads(body)
    except ValueError:
        raise McpCallError(f"{method}: HTTP {status}, not JSON: {body[:200]!r}") from None
    if status != 200 or "error" in reply:
        raise McpCallError(f"{method} failed: HTTP {status} {str(reply)[:300]}")
    return reply


class LegacySession:
    """One MCP 2025-11-25 session: ``initialize`` at construction, then every request carries
    its ``Mcp-Session-Id``."""

    def __init__(self, endpoint: Endpoint, *, session_id: str | None = None) -> None:
        self.endpoint = endpoint
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if session_id is None:
            init = {
                "protocolVersion": LEGACY_VERSION,
                "capabilities": {},
                "clientInfo": CLIENT_INFO,
            }
            message = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}
            status, headers, body = endpoint.post(json.dumps(message).encode(), self.headers)
            _reply("initialize", status, body)
            session_id = headers["mcp-session-id"]
        self.session_id = session_id
        self.headers["Mcp-Session-Id"] = session_id

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request in the session; the JSON-RPC reply (raises on an error)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            message["params"] = params
        status, _, body = self.endpoint.post(json.dumps(message).encode(), self.headers)
        return _reply(method, status, body)


class ModernClient:
    """Stateless MCP 2026-07-28 requests: every one carries ``params._meta`` (protocol version,
    client capabilities, client info) and the ``MCP-Protocol-Version``, ``Mcp-Method`` and
    ``Mcp-Name`` headers.

    :param capabilities: the ``clientCapabilities`` each request declares (``{}``: none; add
        :data:`TASKS_CAPABILITY`'s ``extensions`` for tasks).
    """

    def __init__(self, endpoint: Endpoint, capabilities: Mapping[str, Any] | None = None) -> None:
        self.endpoint = endpoint
        self.meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": dict(capabilities or {}),
            "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        }
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": MODERN_VERSION,
        }

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request; the JSON-RPC reply (raises on an error)."""
        params = {**(params or {}), "_meta": self.meta}
        headers = {**self.headers, "Mcp-Method": method}
        field = _NAME_FIELD.get(method)
        if field is not None:
            headers["Mcp-Name"] = str(params[field])
        message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        status, _, body = self.endpoint.post(json.dumps(message).encode(), headers)
        return _reply(method, status, body)


class RunningServer:
    """A server process started by :func:`start_server`; :meth:`stop` ends it."""

    def __init__(self, process: subprocess.Popen[str], url: str, stderr: IO[bytes]) -> None:
        self.process = process
        self.url = url
        self.endpoint = Endpoint(url)
        self._stderr = stderr

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
        self._stderr.close()


def start_server(command: Sequence[str], env: Mapping[str, str]) -> RunningServer:
    """Start ``command``, a server that prints its endpoint URL as its first stdout line (the
    contract of ``python -m taskstore serve`` and ``taskstore.cli.run_cli``); its stderr goes
    to a temporary file, shown if it exits before printing the URL."""
    # Kept open for the server's life; RunningServer.stop() closes it.
    stderr = tempfile.TemporaryFile()  # noqa: SIM115
    process = subprocess.Popen(
        list(command), stdout=subprocess.PIPE, stderr=stderr, text=True, env=dict(env)
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url:
        process.wait(15)
        stderr.seek(0)
        text = stderr.read().decode(errors="replace").strip()
        stderr.close()
        raise RuntimeError(
            f"{' '.join(command)} exited with status {process.returncode}: {text[-800:]}"
        )
    return RunningServer(process, url, stderr)
